//! The agent's stress worker on its own, for the cgroup tests: `stress-worker stress-worker
//! --kind cpu --load 50`, the same arguments the agent's hidden subcommand takes.

// Test support: a panic is how a test (or its build) fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use faultline::capability::process::stress::{WorkerArgs, run_worker};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Runs one load worker.
    StressWorker(WorkerArgs),
}

fn main() -> anyhow::Result<()> {
    let Cli {
        command: Command::StressWorker(args),
    } = Cli::parse();
    run_worker(&args)
}
