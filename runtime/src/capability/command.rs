//! The `command` capability: allow-listed programs, for probes.
// PLACEHOLDER (issue 9, command helper replaces this whole module).

use super::{CapError, Context, GuestResult, to_guest};
use crate::contract::command::{CommandOutput, Host};

impl Host for Context {
    async fn run(
        &mut self,
        _program: String,
        _args: Vec<String>,
        _timeout_ms: u32,
    ) -> GuestResult<CommandOutput> {
        to_guest(Err(CapError::Unsupported("command: not built yet".into())))
    }
}
