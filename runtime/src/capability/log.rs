//! The `log` capability: plug-in lines into the execution's log.

use super::{Context, LogLine};
use crate::contract::log::{Host, Level};

/// Longest line kept; a plug-in cannot flood the log with one call.
const MAX_LINE: usize = 4096;

impl Host for Context {
    async fn write(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        (self.log)(LogLine {
            plugin: self.grants.component.clone(),
            level,
            message,
        });
        Ok(())
    }
}
