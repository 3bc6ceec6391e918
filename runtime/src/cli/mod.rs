//! Command-line interface: one module per command group. `main.rs` only parses and calls
//! [`main`], which returns the exit code.
//!
//! Exit codes scripts can rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; every change reverted (or the probe passed) |
//! | 1 | the probe ran and failed |
//! | 2 | bad usage or bad input (arguments, parameters, files) |
//! | 3 | the component was refused (contract or policy) |
//! | 4 | inject failed (error, trap, deadline); everything it did was reverted |
//! | 5 | revert failed: the host may still be changed; the journal keeps it for `recover` |
//! | 130, 143 | interrupted by SIGINT or SIGTERM; everything was reverted |

mod agent;
mod demo;
pub mod hub;
mod inject;
mod inspect;
mod params;
mod policy;
mod recover;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the probe failed.
pub const EXIT_PROBE_FAILED: u8 = 1;
/// Exit code: bad usage or input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: component refused.
pub const EXIT_REFUSED: u8 = 3;
/// Exit code: inject failed, reverted.
pub const EXIT_INJECT_FAILED: u8 = 4;
/// Exit code: revert failed.
pub const EXIT_REVERT_FAILED: u8 = 5;

/// Faultline: chaos faults as sandboxed Wasm components, with a rollback you can trust.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about)]
pub struct Cli {
    /// Where the undo journal and the compile cache live.
    #[arg(
        long,
        global = true,
        env = "FAULTLINE_STATE_DIR",
        default_value = "/var/lib/faultline"
    )]
    pub state_dir: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a component's description, imports, exports and the host's verdict.
    Inspect(inspect::InspectArgs),
    /// Inject a fault, hold it for a duration, revert it (Ctrl-C or SIGTERM reverts early).
    Inject(inject::InjectArgs),
    /// Run a probe once.
    Probe(inject::ProbeArgs),
    /// Undo whatever earlier runs that crashed left in the journal.
    Recover,
    /// Serve the run API on loopback: recover first, revert on lease lapse, stop, emergency
    /// stop and shutdown.
    Agent(agent::AgentArgs),
    /// Pause and resume a demo process with the bundled `process-pause` fault.
    Demo(demo::DemoArgs),
    /// The chaos hub: list, search, show, pull, verify; keygen, build, sign, lint.
    Hub {
        /// Agent configuration (TOML with a `[hub]` table); default: the bundled hub.
        #[arg(long, env = "FAULTLINE_CONFIG")]
        config: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: hub::HubCommand,
    },
    /// Explain a policy: what each grant reaches on this host right now.
    Policy(policy::PolicyArgs),
    /// A load worker the agent starts for stress faults (not for people).
    #[command(hide = true)]
    StressWorker(crate::capability::process::stress::WorkerArgs),
}

/// Runs a command, writing its report to `out`; returns the exit code.
pub fn main(cli: Cli, out: &mut dyn Write) -> u8 {
    if let Command::StressWorker(args) = &cli.command {
        // A worker is a plain loop: no async runtime, no state directory.
        return match crate::capability::process::stress::run_worker(args) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                let _ = writeln!(out, "stress worker: {e:#}");
                EXIT_USAGE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let state_dir = cli.state_dir;
    runtime.block_on(async move {
        match cli.command {
            Command::Inspect(a) => inspect::run(a, &state_dir, out).await,
            Command::Inject(a) => inject::inject(a, &state_dir, out).await,
            Command::Probe(a) => inject::probe(a, &state_dir, out).await,
            Command::Recover => recover::run(&state_dir, out).await,
            Command::Agent(a) => agent::run(a, &state_dir, out).await,
            Command::Demo(a) => demo::run(a, &state_dir, out).await,
            Command::Hub { config, command } => hub_main(config, command, &state_dir, out).await,
            Command::Policy(a) => policy::run(a, out).await,
            Command::StressWorker(_) => EXIT_OK,
        }
    })
}

/// Starts a host whose plug-in log lines go to `tracing`, or says why not.
fn start_host(
    config: crate::host::HostConfig,
    out: &mut dyn Write,
) -> Result<crate::host::Host, ()> {
    crate::host::Host::new(config, crate::host::tracing_log()).map_err(|e| {
        let _ = writeln!(out, "error: cannot start the host: {e:#}");
    })
}

/// The bundled hub as the only source, unsigned: its bytes ship with the checkout or the
/// binary, so they are as trusted as the agent itself. Curated hubs configure signatures.
pub(crate) fn default_hub_config(state_dir: &std::path::Path) -> crate::hub::HubConfig {
    crate::hub::HubConfig {
        sources: vec![crate::hub::bundled_index_path().display().to_string()],
        required_signatures: 0,
        cache_dir: Some(state_dir.join("hub")),
        ..crate::hub::HubConfig::default()
    }
}

async fn hub_main(
    config: Option<PathBuf>,
    command: hub::HubCommand,
    state_dir: &std::path::Path,
    out: &mut dyn Write,
) -> u8 {
    let config = match config {
        Some(path) => match crate::hub::HubConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(out, "error: {e:#}");
                return EXIT_USAGE;
            }
        },
        None => default_hub_config(state_dir),
    };
    let imports = crate::host::ImportLister::new();
    match hub::run(command, &config, &imports).await {
        Ok(code) => u8::try_from(code).unwrap_or(EXIT_USAGE),
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            EXIT_USAGE
        }
    }
}
