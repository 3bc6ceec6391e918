//! Hand changes back to the host for undoing.

use crate::Error;
#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"), not(doc))))]
pub use crate::bindings::faultline::contract::rollback::undo;
pub use crate::bindings::faultline::contract::types::Change;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::rollback::undo;

/// Undoes every change, newest first. Keeps going after a failure and returns the first one,
/// so one stubborn change never leaves the others in place.
pub fn undo_all(changes: &[Change]) -> Result<(), Error> {
    let mut first = None;
    for change in changes.iter().rev() {
        if let Err(e) = undo(*change) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
