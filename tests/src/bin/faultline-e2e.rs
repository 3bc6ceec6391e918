//! The `faultline` command line, built inside the tests package so integration tests can run the
//! real binary through `CARGO_BIN_EXE_faultline-e2e`.

// Test support: a panic is how a test (or its build) fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = faultline::cli::Cli::parse();
    let code = faultline::cli::main(cli, &mut std::io::stdout());
    std::process::ExitCode::from(code)
}
