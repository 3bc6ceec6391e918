//! `faultline demo`: the main job on an embedded default. Starts a small HTTP service process
//! (`faultline demo-service`), then runs a real experiment on it (`examples/demo.yaml`, built
//! in): `http-probe` checks the service in steady state and every 500 ms, `process-pause`
//! pauses it so the probe fails during chaos, the pause is reverted, the probe sees it recover,
//! and the verdict comes with the resilience score. Everything comes from the bundled hub,
//! under a policy that grants exactly that process and that port.

use super::run::{RunArgs, execute};
use super::{EXIT_OK, EXIT_USAGE};
use crate::experiment::engine::Options;
use crate::experiment::record::{FaultStatus, Record};
use crate::host::Verdict;
use crate::policy::Policy;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt as _;

/// The demo experiment, with `{{PID}}` and `{{PORT}}` to fill in.
pub const DEMO_EXPERIMENT: &str = include_str!("../../../examples/demo.yaml");

/// `faultline demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the run's JSON journal instead of the live log.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// `faultline demo-service`: the demo's HTTP service (not for people).
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The address to listen on (loopback by default; the examples bind it inside a network
    /// namespace they create); port 0 picks a free one. The first line printed is
    /// `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

/// Runs the demo service until its parent dies or it is killed.
pub async fn service(args: ServiceArgs, out: &mut dyn Write) -> u8 {
    // Dies with the `faultline demo` that started it, even when that one is killed.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "error: cannot listen on {}: {e}", args.listen);
            return EXIT_USAGE;
        }
    };
    match listener.local_addr() {
        Ok(a) => {
            let _ = writeln!(out, "listening on {a}");
            let _ = out.flush();
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_USAGE;
        }
    }
    let app = axum::Router::new().route("/", axum::routing::get(async || "ok\n"));
    match axum::serve(listener, app).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(out, "error: the demo service failed: {e}");
            EXIT_USAGE
        }
    }
}

/// Runs `faultline demo`.
pub async fn run(
    args: DemoArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    let signals = super::inject::interrupted();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(out, "error: cannot find this executable: {e}");
            return EXIT_USAGE;
        }
    };
    let mut child = match tokio::process::Command::new(exe)
        .arg("demo-service")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "error: cannot start the demo service: {e}");
            return EXIT_USAGE;
        }
    };
    let (Some(pid), Some(stdout)) = (child.id(), child.stdout.take()) else {
        let _ = writeln!(out, "error: the demo service exited at once");
        return EXIT_USAGE;
    };
    let mut first = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(stdout).read_line(&mut first),
    )
    .await;
    let port = match (read, first.trim().strip_prefix("listening on ")) {
        (Ok(Ok(_)), Some(addr)) => addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port()),
        _ => None,
    };
    let Some(port) = port else {
        let _ = writeln!(
            out,
            "error: the demo service did not say where it listens: {first:?}"
        );
        let _ = child.kill().await;
        return EXIT_USAGE;
    };
    let code = demo(pid, port, &args, hub, state_dir, signals, out).await;
    let _ = child.kill().await;
    code
}

/// The demo's policy: exactly the service's pid for `process-pause`, exactly its port for
/// `http-probe`.
fn policy_text(pid: u32, port: u16) -> String {
    format!(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{pid}], signals = [\"stop\"] }}\n\n[[grant]]\ncomponent = \"http-probe@^0.1\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [\"{port}\"] }}\n"
    )
}

async fn demo(
    pid: u32,
    port: u16,
    args: &DemoArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    signals: impl std::future::Future<Output = crate::execution::StopReason>,
    out: &mut dyn Write,
) -> u8 {
    let policy_text = policy_text(pid, port);
    let text = DEMO_EXPERIMENT
        .replace("{{PID}}", &pid.to_string())
        .replace("{{PORT}}", &port.to_string());
    if !args.json {
        let _ = writeln!(
            out,
            "demo service: `faultline demo-service` as pid {pid}, http://127.0.0.1:{port}/"
        );
        let _ = writeln!(
            out,
            "policy:\n  {}",
            policy_text.trim_end().replace('\n', "\n  ")
        );
    }
    let policy = match Policy::parse(&policy_text) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    let experiment = match crate::experiment::parse::parse(&text, "examples/demo.yaml") {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(out, "{e}");
            return EXIT_USAGE;
        }
    };
    let options = Options {
        state_dir: state_dir.to_path_buf(),
        hub: hub.clone(),
        policy,
        trusted_roots: Vec::new(),
        memory_limit: 64 << 20,
        call_timeout: Duration::from_secs(10),
    };
    let run_args = RunArgs {
        experiment: PathBuf::from("examples/demo.yaml"),
        dry_run: false,
        policy: None,
        json: args.json,
        junit: args.junit.clone(),
        html: args.html.clone(),
        memory_mib: 64,
        call_timeout: Duration::from_secs(10),
        lease: None,
    };
    let digest = crate::hub::Digest::of(text.as_bytes()).to_string();
    let (code, record) = execute(
        experiment,
        "examples/demo.yaml",
        &digest,
        &options,
        &run_args,
        signals,
        out,
    )
    .await;
    match record {
        Some(r) if went_as_expected(&r, pid) => {
            if !args.json {
                let _ = writeln!(
                    out,
                    "demo passed: the probe saw the service stop answering while it was paused and answer again after the revert"
                );
            }
            EXIT_OK
        }
        Some(r) => {
            let _ = writeln!(
                out,
                "demo did not go as expected: status {}{}",
                r.status.as_str(),
                r.reason.map(|x| format!(", {x}")).unwrap_or_default()
            );
            if code == EXIT_OK {
                super::EXIT_INJECT_FAILED
            } else {
                code
            }
        }
        None => code,
    }
}

/// Whether the demo showed what it is for: steady state before and after, the service
/// failing the continuous probe while paused and passing it otherwise, the pause reverted.
fn went_as_expected(r: &Record, pid: u32) -> bool {
    let steady = r.probes.iter().find(|p| p.name == "steady-state");
    let during = r.probes.iter().find(|p| p.name == "service-answers");
    let fault = r.faults.first();
    let (Some(steady), Some(during), Some(fault)) = (steady, during, fault) else {
        return false;
    };
    let window = fault
        .targets
        .first()
        .and_then(|t| Some((t.injected_ms?, t.reverted_ms?)));
    let Some((from, to)) = window else {
        return false;
    };
    let failed_inside = during
        .checks
        .iter()
        .any(|c| c.verdict == Verdict::Failed && c.at_ms >= from && c.at_ms <= to);
    let passed_outside = during
        .checks
        .iter()
        .any(|c| c.verdict == Verdict::Passed && (c.at_ms < from || c.at_ms > to));
    let resumed = crate::capability::process::linux::info(pid).is_some_and(|p| p.state != 'T');
    steady.verdict == Some(Verdict::Passed)
        && fault.status == FaultStatus::CompletedWithError
        && failed_inside
        && passed_outside
        && resumed
}
