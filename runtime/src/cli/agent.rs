//! `faultline agent`: recover, then serve the run API on loopback until SIGTERM or SIGINT,
//! which revert everything before the agent exits.

use super::{EXIT_OK, EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::agent::{Agent, api, http, load_policy};
use crate::host::{HostConfig, recover::recover};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
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
    // Nor may a network fault on this host cut the agent off from its callers or its hubs.
    for problem in host.spare_hub_sources(hub).await.1 {
        let _ = writeln!(out, "warning: {problem}");
    }
    let hub = match crate::hub::open_hub(hub.clone()).await {
        Ok((h, problems)) => {
            for p in problems {
                let _ = writeln!(out, "warning: hub: {p}");
            }
            Some(h)
        }
        Err(e) => {
            let _ = writeln!(out, "warning: no hub, runs cannot resolve components: {e}");
            None
        }
    };
    let agent = Arc::new(Agent::new(host, policy, hub));
    let served = agent.clone();
    let handler = move |request| api::handle(served.clone(), request);
    let mut code = EXIT_OK;
    let shutdown = async {
        code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
    };
    http::serve(listener, handler, shutdown).await;
    let done = agent.shutdown().await;
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
