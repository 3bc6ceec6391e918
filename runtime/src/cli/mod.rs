//! Command-line interface: one module per command group. `main.rs` only parses and calls
//! [`main`], which returns the exit code.
//!
//! With `--agent URL` or `--fleet FILE` ([`remote::RemoteArgs`]), `run`, `executions`, `stop`
//! and `emergency-stop` go to running agents instead of this host ([`remote`], [`fleet`]).
//!
//! Exit codes scripts can rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; every change reverted (or the probe passed) |
//! | 1 | the probe ran and the system failed it (an outcome with `ok: false`) |
//! | 2 | bad usage or bad input (arguments, parameters, files) |
//! | 3 | the component was refused (contract or policy) |
//! | 4 | inject or a tick failed (error, trap, deadline); everything it did was reverted |
//! | 5 | revert failed: the host may still be changed; the journal keeps it for `recover` |
//! | 6 | the probe could not run (not applicable): it returned an error, trapped, hit a limit or was denied |
//! | 7 | an agent could not be reached, timed out or failed (with `--agent`, `--fleet`; see [`remote`]) |
//! | 130, 143 | interrupted by SIGINT or SIGTERM; everything was reverted |

mod agent;
mod demo;
mod executions;
pub mod fleet;
pub mod hub;
mod inject;
mod inspect;
mod new;
mod params;
mod policy;
mod recover;
pub mod remote;
mod run;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the probe failed.
pub const EXIT_PROBE_FAILED: u8 = 1;
/// Exit code: bad usage or input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: component refused.
pub const EXIT_REFUSED: u8 = 3;
/// Exit code: inject (or a tick) failed, reverted.
pub const EXIT_INJECT_FAILED: u8 = 4;
/// Exit code: revert failed.
pub const EXIT_REVERT_FAILED: u8 = 5;
/// Exit code: the probe could not run ([`crate::host::Verdict::NotApplicable`]).
pub const EXIT_PROBE_NOT_APPLICABLE: u8 = 6;

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
    /// Agent configuration: a TOML file whose `[hub]` table says which hubs to use and which
    /// keys to trust, for every command that loads components. Default: the bundled hub alone.
    #[arg(long, global = true, env = "FAULTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Which agents to drive instead of this host.
    #[command(flatten)]
    pub remote: remote::RemoteArgs,
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
    /// Run an experiment: faults and probes on a timeline, a verdict, a record.
    Run(run::RunArgs),
    /// Print the experiment file's JSON Schema (what `docs/experiment.schema.json` holds).
    Schema,
    /// Set or clear the emergency stop every faultline process on this host obeys (with
    /// `--agent`: on every agent named).
    EmergencyStop(EmergencyStopArgs),
    /// Stop an execution running on an agent (`--agent URL`, `--fleet FILE`) and show its
    /// final record once everything is reverted.
    Stop(remote::StopArgs),
    /// Undo whatever earlier runs that crashed left in the journal.
    Recover,
    /// Serve the agent's API (`--config agent.toml`): recover first, then revert on lease
    /// lapse, stop, emergency stop and shutdown; `agent token` manages its tokens.
    Agent(agent::AgentArgs),
    /// Run the demo experiment: a web service it starts, paused by `process-pause` while
    /// `http-probe` checks it; the verdict and the resilience score.
    Demo(demo::DemoArgs),
    /// The history of experiment runs: list, show, log.
    Executions {
        /// What to do.
        #[command(subcommand)]
        command: executions::ExecutionsCommand,
    },
    /// The chaos hub: list, search, show, pull, verify; init, keygen, build, sign, lint, yank.
    Hub {
        /// What to do.
        #[command(subcommand)]
        command: hub::HubCommand,
    },
    /// Explain a policy: what each grant reaches on this host right now.
    Policy(policy::PolicyArgs),
    /// Start a fault or probe crate: builds out of tree with one `cargo build`, with a README,
    /// an example policy and tests against the SDK's mock host.
    New(new::NewArgs),
    /// The demo's HTTP service (not for people).
    #[command(hide = true)]
    DemoService(demo::ServiceArgs),
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
    let config = cli.config;
    if cli.remote.wanted() {
        let remote = cli.remote;
        return runtime.block_on(remote_main(cli.command, &remote, out));
    }
    runtime.block_on(async move {
        match cli.command {
            Command::Inspect(a) => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => inspect::run(a, &hub, &state_dir, out).await,
                Err(e) => config_error(e, out),
            },
            Command::Inject(a) => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => inject::inject(a, &hub, &state_dir, out).await,
                Err(e) => config_error(e, out),
            },
            Command::Probe(a) => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => inject::probe(a, &hub, config.as_deref(), &state_dir, out).await,
                Err(e) => config_error(e, out),
            },
            Command::Run(a) => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => run::run(a, &hub, config.as_deref(), &state_dir, out).await,
                Err(e) => config_error(e, out),
            },
            Command::EmergencyStop(a) => emergency_stop(a, &state_dir, out).await,
            Command::Stop(_) => {
                let _ = writeln!(
                    out,
                    "error: `faultline stop` stops an execution on an agent: give --agent URL or --fleet FILE"
                );
                EXIT_USAGE
            }
            Command::Schema => {
                let schema = crate::experiment::parse::schema();
                match serde_json::to_string_pretty(&schema) {
                    Ok(text) => {
                        let _ = writeln!(out, "{text}");
                        EXIT_OK
                    }
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                        EXIT_USAGE
                    }
                }
            }
            Command::Recover => recover::run(&state_dir, out).await,
            Command::Agent(a) => agent::run(a, config.as_deref(), &state_dir, out).await,
            Command::Demo(a) => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => demo::run(a, &hub, &state_dir, out).await,
                Err(e) => config_error(e, out),
            },
            Command::Hub { command } => match hub_config(config.as_deref(), &state_dir) {
                Ok(hub) => hub_main(command, &hub, out).await,
                Err(e) => config_error(e, out),
            },
            Command::Policy(a) => policy::run(a, out).await,
            Command::New(a) => new::run(a, out),
            Command::DemoService(a) => demo::service(a, out).await,
            Command::Executions { command } => executions::run(command, &state_dir, out).await,
            Command::StressWorker(_) => EXIT_OK,
        }
    })
}

/// A command sent to agents: `run`, `executions`, `stop`, `emergency-stop`; the others run on
/// this host only and say so.
async fn remote_main(command: Command, args: &remote::RemoteArgs, out: &mut dyn Write) -> u8 {
    let name = match &command {
        Command::Run(_)
        | Command::Executions { .. }
        | Command::Stop(_)
        | Command::EmergencyStop(_) => None,
        Command::Inspect(_) => Some("inspect"),
        Command::Inject(_) => Some("inject"),
        Command::Probe(_) => Some("probe"),
        Command::Schema => Some("schema"),
        Command::Recover => Some("recover"),
        Command::Agent(_) => Some("agent"),
        Command::Demo(_) => Some("demo"),
        Command::Hub { .. } => Some("hub"),
        Command::Policy(_) => Some("policy"),
        Command::New(_) => Some("new"),
        Command::DemoService(_) => Some("demo-service"),
        Command::StressWorker(_) => Some("stress-worker"),
    };
    if let Some(name) = name {
        let _ = writeln!(
            out,
            "error: `faultline {name}` works on this host; --agent, --fleet (or FAULTLINE_AGENT) apply to run, executions, stop and emergency-stop"
        );
        return EXIT_USAGE;
    }
    let remote = match remote::Remote::connect(args).await {
        Ok(r) => r,
        Err((code, e)) => {
            let _ = writeln!(out, "error: {e}");
            return code;
        }
    };
    let code = match command {
        Command::Run(a) => fleet::run(a, &remote, out).await,
        Command::Executions { command } => remote::executions(command, &remote, out).await,
        Command::Stop(a) => remote::stop(a, &remote, out).await,
        Command::EmergencyStop(a) => remote::emergency_stop(a, &remote, out).await,
        _ => EXIT_USAGE,
    };
    let _ = out.flush();
    code
}

/// `faultline emergency-stop`.
#[derive(Debug, clap::Args)]
pub struct EmergencyStopArgs {
    /// Why (kept in the marker, shown to every run it stops or refuses).
    #[arg(long, default_value = "emergency stop from the command line")]
    pub reason: String,
    /// Clear it instead: runs may start again.
    #[arg(long)]
    pub clear: bool,
}

async fn emergency_stop(args: EmergencyStopArgs, state_dir: &Path, out: &mut dyn Write) -> u8 {
    let dir = state_dir.to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        if args.clear {
            crate::estop::clear(&dir).map(|was| {
                if was {
                    "emergency stop cleared: runs may start again".to_string()
                } else {
                    "no emergency stop was active".to_string()
                }
            })
        } else {
            crate::estop::set(&dir, &args.reason).map(|()| {
                "emergency stop set: running experiments stop and revert; new runs are refused until `faultline emergency-stop --clear`".to_string()
            })
        }
    })
    .await;
    print_outcome(done.map(|r| r.map(|msg| msg + "\n")), out)
}

/// Prints what a command's work on the blocking pool came to: its text (exit 0), or its error
/// (exit 2), or that the task failed.
fn print_outcome<E: std::fmt::Display>(
    done: Result<Result<String, E>, tokio::task::JoinError>,
    out: &mut dyn Write,
) -> u8 {
    match done {
        Ok(Ok(text)) => {
            let _ = write!(out, "{text}");
            EXIT_OK
        }
        Ok(Err(e)) => {
            let _ = writeln!(out, "error: {e:#}");
            EXIT_USAGE
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            EXIT_USAGE
        }
    }
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

/// The hub configuration every command that loads components uses: the `[hub]` table of
/// `cli_config` (`--config` / `FAULTLINE_CONFIG`), read once, or with no file the bundled hub
/// alone. The cache is `<state_dir>/hub` unless the file names one.
pub fn hub_config(
    cli_config: Option<&Path>,
    state_dir: &Path,
) -> Result<crate::hub::HubConfig, crate::hub::HubError> {
    let mut config = match cli_config {
        Some(path) => crate::hub::HubConfig::load(path)?,
        None => crate::hub::HubConfig::default(),
    };
    if config.cache_dir.is_none() {
        config.cache_dir = Some(state_dir.join("hub"));
    }
    Ok(config)
}

/// Reports a configuration that cannot be used: a usage error.
fn config_error(e: crate::hub::HubError, out: &mut dyn Write) -> u8 {
    let _ = writeln!(out, "error: {e}");
    EXIT_USAGE
}

/// A component named on the command line, with the identity grants are matched against.
#[derive(Debug)]
pub struct Component {
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Where it came from: a verified hub release, or a local file known by its digest.
    pub identity: crate::policy::Identity,
    /// The hub's warnings (sync problems, yanked but pinned, deprecated).
    pub warnings: Vec<String>,
}

/// Reads a component file (known by its digest), or fetches a hub reference (`name`, `name@^1`,
/// `=1.2.3`, `sha256:<hex>`) through the hubs of `hub`, verified under its trust. A refusal keeps
/// its [`crate::hub::HubError`] in the chain, for [`component_exit_code`].
pub async fn read_component(
    what: &str,
    hub: &crate::hub::HubConfig,
) -> anyhow::Result<crate::component::Fetched> {
    use anyhow::Context as _;
    let source = crate::component::Source::from_cli(what);
    if let crate::component::Source::File(_) = source {
        return source.fetch(None).await;
    }
    let (hub, warnings) = crate::hub::open_hub(hub.clone())
        .await
        .with_context(|| format!("{what} is not a file, and no hub could be loaded"))?;
    let mut fetched = source.fetch(Some(&hub)).await?;
    fetched.warnings.splice(0..0, warnings);
    Ok(fetched)
}

/// The exit code for a component that could not be read: refused (3) when a hub refused it
/// (signature, digest, curation), else a usage error (2).
pub fn component_exit_code(e: &anyhow::Error) -> u8 {
    let refused = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<crate::hub::HubError>())
        .is_some_and(crate::hub::HubError::is_refusal);
    if refused { EXIT_REFUSED } else { EXIT_USAGE }
}

async fn hub_main(
    command: hub::HubCommand,
    config: &crate::hub::HubConfig,
    out: &mut dyn Write,
) -> u8 {
    let imports = std::sync::Arc::new(crate::host::ImportLister::new());
    match hub::run(command, config, imports, out).await {
        Ok(code) => u8::try_from(code).unwrap_or(EXIT_USAGE),
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            EXIT_USAGE
        }
    }
}
