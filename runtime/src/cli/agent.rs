//! `faultline agent --config agent.toml`: recover, then serve the API until SIGTERM or SIGINT,
//! which revert everything before the agent exits; and `faultline agent token …`, which
//! manages the tokens file.
//!
//! Flags override the file for quick starts: `faultline agent --listen 127.0.0.1:0 --tokens
//! tokens.toml --policy policy.toml` needs no `agent.toml` at all.

use super::{EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::agent::auth::{self, Role, Tokens};
use crate::agent::config::{AgentConfig, Listen};
use crate::agent::server::{Listener, serve};
use crate::agent::{App, api, load_policy};
use crate::host::{HostConfig, recover::recover};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// `faultline agent`. The global `--config` names the agent's `agent.toml`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// Manage tokens instead of serving.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// Where to listen (overrides `[agent] listen`): `127.0.0.1:7787`, `[::1]:0`,
    /// `unix:/run/faultline/agent.sock`. Port 0 picks a free port; the first line of output
    /// names what was bound.
    #[arg(long)]
    pub listen: Option<String>,
    /// The operator's policy (TOML; overrides `[agent] policy`). Without one nothing is granted.
    #[arg(long, env = "FAULTLINE_POLICY")]
    pub policy: Option<PathBuf>,
    /// The tokens file (overrides `[agent] tokens`; required without `--config`).
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Deadline for each call into a component, revert included (overrides `[agent]
    /// call_timeout`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub call_timeout: Option<Duration>,
}

/// `faultline agent <command>`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// The tokens file: add, list, revoke.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `faultline agent token <command>`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token, store its hash, print the token (once: it is stored nowhere).
    Add {
        /// The tokens file (created 0600 when missing).
        #[arg(long)]
        tokens: PathBuf,
        /// A name for people and logs (unique in the file).
        #[arg(long)]
        name: String,
        /// viewer, runner or admin.
        #[arg(long)]
        role: Role,
        /// The team whose experiments it may run.
        #[arg(long)]
        team: String,
    },
    /// Show the tokens' names, roles and teams.
    List {
        /// The tokens file.
        #[arg(long)]
        tokens: PathBuf,
    },
    /// Remove a token: it is refused from the agent's next start.
    Revoke {
        /// The tokens file.
        #[arg(long)]
        tokens: PathBuf,
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

/// Runs `faultline agent token …`. File work in the blocking pool.
async fn token(command: TokenCommand, out: &mut dyn Write) -> u8 {
    let done = tokio::task::spawn_blocking(move || match command {
        TokenCommand::Add {
            tokens,
            name,
            role,
            team,
        } => auth::add(&tokens, &name, role, &team).map(|t| {
            format!(
                "{t}\n# token {name:?} ({}, team {team}) added to {}; it is shown only now\n",
                role.as_str(),
                tokens.display()
            )
        }),
        TokenCommand::List { tokens } => auth::list(&tokens).map(|entries| {
            let mut text = String::new();
            for e in entries {
                text.push_str(&format!("{}\t{}\t{}\n", e.name, e.role.as_str(), e.team));
            }
            text
        }),
        TokenCommand::Revoke { tokens, name } => auth::revoke(&tokens, &name).map(|e| {
            format!(
                "revoked {:?} ({}, team {}); restart the agent to refuse it\n",
                e.name,
                e.role.as_str(),
                e.team
            )
        }),
    })
    .await;
    super::print_outcome(done, out)
}

/// The configuration: `agent.toml` when given, then the flags over it. Sync (file reads).
fn configure(
    args: &AgentArgs,
    file: Option<&Path>,
    state_dir: &Path,
) -> Result<AgentConfig, String> {
    let mut config = match file {
        Some(path) => AgentConfig::load(path).map_err(|e| e.to_string())?,
        None => {
            let tokens = args.tokens.clone().ok_or(
                "no tokens: give --config agent.toml (with [agent] tokens) or --tokens FILE",
            )?;
            let listen = Listen::parse(crate::agent::config::DEFAULT_LISTEN, Path::new("."))?;
            AgentConfig::new(listen, tokens)
        }
    };
    if let Some(listen) = &args.listen {
        config.listen = Listen::parse(listen, Path::new("."))?;
    }
    if let Some(tokens) = &args.tokens {
        config.tokens = tokens.clone();
    }
    if let Some(policy) = &args.policy {
        config.policy = Some(policy.clone());
    }
    if let Some(t) = args.call_timeout {
        config.call_timeout = t;
    }
    config.check_plaintext()?;
    if config.hub.cache_dir.is_none() {
        config.hub.cache_dir = Some(state_dir.join("hub"));
    }
    Ok(config)
}

/// Runs `faultline agent`.
pub async fn run(
    args: AgentArgs,
    config_file: Option<&Path>,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    if let Some(AgentCommand::Token { command }) = args.command {
        return token(command, out).await;
    }
    // Handlers first: a SIGTERM during recovery must not kill us halfway through an undo.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = writeln!(out, "error: cannot install signal handlers");
        return EXIT_USAGE;
    };
    let (file, dir) = (config_file.map(Path::to_path_buf), state_dir.to_path_buf());
    let loaded = tokio::task::spawn_blocking(move || {
        let config = configure(&args, file.as_deref(), &dir)?;
        let tokens = Tokens::load(&config.tokens).map_err(|e| format!("{e:#}"))?;
        let policy = load_policy(config.policy.as_deref()).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((config, tokens, policy))
    })
    .await;
    let (config, tokens, policy) = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_USAGE;
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut host_config = HostConfig::new(state_dir.to_path_buf());
    host_config.call_timeout = config.call_timeout;
    host_config.revert_timeout = config.call_timeout;
    let Ok(host) = super::start_host(host_config, out) else {
        return EXIT_USAGE;
    };
    // Recovery before any work: remnants of a crashed run are undone before the port opens.
    let report = match recover(&host).await {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: recovery failed, not accepting work: {e:#}");
            return EXIT_REVERT_FAILED;
        }
    };
    let listener = match Listener::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    // No probe may reach the agent's own API, whatever the policy grants.
    if let Some(bound) = listener.local_addr() {
        host.protect_endpoint(bound);
    }
    let _ = writeln!(out, "listening on {}", listener.describe());
    super::recover::print_report(&report, out);
    if tokens.is_empty() {
        let _ = writeln!(
            out,
            "warning: {} holds no token: every request but /healthz and /readyz is refused",
            config.tokens.display()
        );
    }
    let _ = out.flush();
    // Nor may a network fault on this host cut the agent off from its callers or its hubs.
    for problem in host.spare_hub_sources(&config.hub).await.1 {
        let _ = writeln!(out, "warning: {problem}");
    }
    let app = match App::start(&config, host, policy, tokens).await {
        Ok((app, warnings)) => {
            for w in warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            app
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    let _ = out.flush();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = serve(listener, &config, api::router(app.clone()), async move {
        let _ = stop_rx.await;
    });
    // Everything is reverted before the listener closes: event streams end with their runs.
    let control = async {
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        let done = app.shutdown().await;
        let _ = stop_tx.send(());
        (code, done)
    };
    let (served, (code, done)) = tokio::join!(serving, control);
    if let Err(e) = served {
        let _ = writeln!(out, "warning: serving ended with an error: {e:#}");
    }
    let _ = writeln!(
        out,
        "shutting down: {} run(s) stopped, reverted in {:.1} ms",
        done.stopped, done.reverted_in_ms
    );
    if !done.failures.is_empty() {
        let _ = writeln!(out, "REVERT FAILED: the host may still be changed:");
        for f in &done.failures {
            let _ = writeln!(out, "  - {f}");
        }
        return EXIT_REVERT_FAILED;
    }
    code
}
