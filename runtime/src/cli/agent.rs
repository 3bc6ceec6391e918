//! `faultline agent`: recover, then serve the run API on loopback until SIGTERM or SIGINT,
//! which revert everything before the agent exits.

use super::{EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::agent::auth::Tokens;
use crate::agent::config::{AgentConfig, Listen};
use crate::agent::{App, api, load_policy, server};
use crate::host::{HostConfig, recover::recover};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// `faultline agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to listen on; loopback only (the API has no authentication yet). Port 0 picks
    /// a free port; the first line of output names the bound address.
    #[arg(long, default_value = "127.0.0.1:7787")]
    pub listen: SocketAddr,
    /// The operator's policy (TOML). Without one nothing is granted.
    #[arg(long, env = "FAULTLINE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Deadline for each call into a component (revert included).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
    /// The tokens file (TOML `[[token]]` tables of name, role, team, sha256). Without one no
    /// token is accepted.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
}

/// Runs `faultline agent`.
pub async fn run(
    args: AgentArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    if !args.listen.ip().is_loopback() {
        let _ = writeln!(
            out,
            "error: --listen {} is not a loopback address; the API has no authentication yet",
            args.listen
        );
        return EXIT_USAGE;
    }
    let policy = match load_policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    // Handlers first: a SIGTERM during recovery must not kill us halfway through an undo.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = writeln!(out, "error: cannot install signal handlers");
        return EXIT_USAGE;
    };
    let mut config = HostConfig::new(state_dir.to_path_buf());
    config.call_timeout = args.call_timeout;
    config.revert_timeout = args.call_timeout;
    let Ok(host) = super::start_host(config, out) else {
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
    let tokens = match &args.tokens {
        Some(path) => match Tokens::load(path) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(out, "error: cannot use tokens {}: {e:#}", path.display());
                return EXIT_USAGE;
            }
        },
        None => Tokens::default(),
    };
    let config = AgentConfig {
        listen: Listen::Tcp(args.listen),
        tls: None,
        tokens: args.tokens.clone().unwrap_or_default(),
        policy: args.policy.clone(),
        allowed_hosts: Vec::new(),
        labels: Default::default(),
        hub_sync_interval: Duration::from_secs(300),
        call_timeout: args.call_timeout,
        max_connections: 256,
        hub: hub.clone(),
    };
    let listener = match server::Listener::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "error: cannot listen on {}: {e}", args.listen);
            return EXIT_USAGE;
        }
    };
    // No probe may reach the agent's own API, whatever the policy grants.
    let bound = listener.local_addr().unwrap_or(args.listen);
    host.protect_endpoint(bound);
    let _ = writeln!(out, "listening on {bound}");
    super::recover::print_report(&report, out);
    let _ = out.flush();
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
    let serving = server::serve(listener, &config, api::router(app.clone()), async move {
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
