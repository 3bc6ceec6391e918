//! The `rollback` capability: a plug-in hands its own changes back for undoing.

use super::{CapError, Context, GuestResult};
use crate::contract::rollback::Host;

impl Context {
    /// Undoes a journalled change of this execution and plug-in; unknown (already undone) ids
    /// succeed, other plug-ins' changes are denied.
    pub fn undo(&mut self, change: u64) -> Result<(), CapError> {
        let Some(entry) = self.journal.get(change) else {
            return Ok(()); // already undone
        };
        if entry.execution != self.execution || entry.plugin != self.grants.component {
            return Err(CapError::Denied(format!(
                "change {change} belongs to {} in execution {}, not to {}",
                entry.plugin, entry.execution, self.grants.component
            )));
        }
        match self.backends.undo_json(&entry.inverse) {
            Ok(()) => self
                .journal
                .undone(change)
                .map_err(|e| CapError::Failed(format!("journal: {e:#}"))),
            Err(e) => {
                let _ = self.journal.undo_failed(change, &e.to_string());
                Err(e)
            }
        }
    }
}

impl Host for Context {
    async fn undo(&mut self, change: u64) -> GuestResult<()> {
        self.blocking(move |c| Context::undo(c, change)).await
    }
}
