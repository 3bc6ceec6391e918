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
            execution: self.execution.clone(),
            plugin: self.grants.component.clone(),
            level,
            message,
        });
        Ok(())
    }
}

impl Level {
    /// The level as a word: `info`, `warn`…
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
