//! `faultline executions`: the history of experiment runs (`list`, `show ID`, `log ID`).

use super::EXIT_USAGE;
use clap::Subcommand;
use std::io::Write;
use std::path::Path;

/// `faultline executions …`.
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// The newest runs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: status, end state, score, faults, probes.
    Show {
        /// The run's id.
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run's log.
    Log {
        /// The run's id.
        id: String,
    },
}

/// Runs `faultline executions …` on the history in `state_dir`.
pub async fn run(command: ExecutionsCommand, state_dir: &Path, out: &mut dyn Write) -> u8 {
    let _ = (command, state_dir);
    let _ = writeln!(out, "error: not yet");
    EXIT_USAGE
}
