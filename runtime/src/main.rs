//! The `faultline` binary: parse, call the library, map the outcome to an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = faultline::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = faultline::cli::main(cli, &mut std::io::stdout());
    std::process::ExitCode::from(code)
}
