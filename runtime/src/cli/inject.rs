//! `faultline inject` and `faultline probe`: load a component, run it once, always revert.

use super::{
    EXIT_INJECT_FAILED, EXIT_OK, EXIT_PROBE_FAILED, EXIT_PROBE_NOT_APPLICABLE, EXIT_REFUSED,
    EXIT_REVERT_FAILED, EXIT_USAGE, params,
};
use crate::capability::LogLine;
use crate::capability::outbound::config::OutboundConfig;
use crate::component::Source;
use crate::execution::{Event, EventKind, Execution, Outcome, Phase, Spec, StopReason, new_id};
use crate::host::{Host, HostConfig, LoadError, Plugin, Verdict, elapsed_ms};
use crate::hub::HubConfig;
use crate::policy::Policy;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;

/// Where the component comes from and what it may do.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The component: a `.wasm` file (known by its digest only: it matches `sha256:` grants),
    /// or a hub reference (`process-pause`, `name@^0.1`, `sha256:<hex>`) resolved in the
    /// configured hubs (known by its verified hub release).
    pub component: String,
    /// Parameters as key=value (repeatable); values that parse as JSON are taken as JSON.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Parameters as one JSON object (`--param` pairs override its keys).
    #[arg(long)]
    pub params_json: Option<String>,
    /// The operator's policy (TOML). Without one nothing is granted.
    #[arg(long, env = "FAULTLINE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Memory the component may use in all, in MiB (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub memory_mib: u16,
    /// Deadline for each call into the component (10ms to 10m).
    #[arg(long, default_value = "10s", value_parser = call_timeout)]
    pub call_timeout: Duration,
    /// An id for this execution (logs and journal); generated when absent.
    #[arg(long, value_parser = execution_id_arg)]
    pub execution_id: Option<String>,
}

/// `faultline inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// How long to keep the fault injected (`30s`, `2m`; at most 7 days).
    #[arg(long, short = 'd', default_value = "30s", value_parser = hold_duration)]
    pub duration: Duration,
}

/// `faultline probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the result as one JSON object (`verdict`: passed, failed or not-applicable).
    #[arg(long)]
    pub json: bool,
}

fn bounded_duration(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < min || d > max {
        return Err(format!(
            "{text} is out of range ({} to {})",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

pub(super) fn call_timeout(text: &str) -> Result<Duration, String> {
    bounded_duration(text, Duration::from_millis(10), Duration::from_secs(600))
}

pub(super) fn hold_duration(text: &str) -> Result<Duration, String> {
    bounded_duration(text, Duration::ZERO, Duration::from_secs(7 * 24 * 3600))
}

fn execution_id_arg(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(text.to_string())
    } else {
        Err("an execution id is 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'".into())
    }
}

/// The most plug-in log lines [`Lines`] keeps: a guest that logs in a loop cannot grow the
/// CLI's memory (the rest still reach the tracing log, and are counted).
const MAX_LINES: usize = 1024;

/// Plug-in log lines of a probe, buffered until the command prints them: the first
/// [`MAX_LINES`], and how many were dropped after them.
#[derive(Clone, Default)]
pub(super) struct Lines(Arc<Mutex<(Vec<LogLine>, u64)>>);

impl Lines {
    pub(super) fn sink(&self) -> crate::capability::LogSink {
        let lines = self.0.clone();
        let forward = crate::host::tracing_log();
        Arc::new(move |line: LogLine| {
            forward(line.clone());
            if let Ok(mut l) = lines.lock() {
                if l.0.len() < MAX_LINES {
                    l.0.push(line);
                } else {
                    l.1 += 1;
                }
            }
        })
    }

    /// Takes the lines buffered so far, and how many were dropped.
    fn take(&self) -> (Vec<LogLine>, u64) {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    pub(super) fn flush(&self, out: &mut dyn Write) {
        let (lines, dropped) = self.take();
        for line in lines {
            let _ = writeln!(out, "  [{}] {}: {}", line.plugin, line.level, line.message);
        }
        if dropped > 0 {
            let _ = writeln!(out, "  ({dropped} more log lines not shown)");
        }
    }
}

/// A host and a loaded plug-in, or the exit code that says why not.
pub(super) struct Loaded {
    pub host: Arc<Host>,
    pub plugin: Plugin,
    pub params: String,
    pub lines: Lines,
}

pub(super) async fn load(
    args: &LoadArgs,
    hub: &HubConfig,
    state_dir: &Path,
    policy: Option<Policy>,
    trusted_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    out: &mut dyn Write,
) -> Result<Loaded, u8> {
    let fail = |out: &mut dyn Write, code: u8, msg: String| {
        let _ = writeln!(out, "error: {msg}");
        code
    };
    let params = params::build(args.params_json.as_deref(), &args.params)
        .map_err(|e| fail(out, EXIT_USAGE, format!("{e:#}")))?;
    let policy = match (policy, &args.policy) {
        (Some(p), _) => p,
        (None, Some(path)) => {
            Policy::load(path).map_err(|e| fail(out, EXIT_USAGE, format!("{e:#}")))?
        }
        (None, None) => Policy::default(),
    };
    let source = Source::from_cli(&args.component);
    let fetched = super::read_component(&args.component, hub)
        .await
        .map_err(|e| fail(out, super::component_exit_code(&e), format!("{e:#}")))?;
    for w in &fetched.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let mut config = HostConfig::new(state_dir.to_path_buf());
    config.memory_limit = usize::from(args.memory_mib) << 20;
    config.call_timeout = args.call_timeout;
    config.revert_timeout = args.call_timeout;
    config.trusted_roots = trusted_roots;
    let lines = Lines::default();
    let host = Host::new(config, lines.sink())
        .map_err(|e| fail(out, EXIT_USAGE, format!("cannot start the host: {e:#}")))?;
    let start = Instant::now();
    let plugin = match host.load(&fetched.bytes, &fetched.identity, &policy).await {
        Ok(p) => p,
        Err(LoadError::Host(e)) => return Err(fail(out, EXIT_USAGE, format!("{e:#}"))),
        Err(e) => {
            return Err(fail(out, EXIT_REFUSED, format!("{source} refused: {e}")));
        }
    };
    let info = plugin.info();
    let _ = writeln!(
        out,
        "loaded {} ({}, {}, {}) in {:.1} ms",
        info.label(),
        info.kind,
        short(&info.digest),
        match &info.identity.origin {
            Some(o) => format!("from hub {}", o.hub),
            None => "local file".to_string(),
        },
        elapsed_ms(start)
    );
    let validated = match &plugin {
        Plugin::Fault(f) => f.validate(&host, &params).await,
        Plugin::Probe(p) => p.validate(&host, &params).await,
    };
    if let Err(e) = validated {
        lines.flush(out);
        return Err(fail(out, EXIT_USAGE, format!("parameters refused: {e}")));
    }
    Ok(Loaded {
        host: Arc::new(host),
        plugin,
        params,
        lines,
    })
}

pub(super) fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// Installs the SIGTERM and SIGINT handlers now (not when first polled: until then a signal
/// kills the process with its default action, without a revert) and returns the future that
/// resolves on either.
pub(super) fn interrupted() -> impl std::future::Future<Output = StopReason> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers we cannot revert early; hold forever and let the timer win.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => StopReason::Sigterm,
            _ = int.recv() => StopReason::Sigint,
        }
    }
}

/// The exit code of a fault run.
pub(super) fn exit_code(outcome: &Outcome) -> u8 {
    if !outcome.is_clean() {
        return EXIT_REVERT_FAILED;
    }
    match outcome.reason {
        StopReason::InjectFailed | StopReason::TickFailed | StopReason::Abandoned => {
            EXIT_INJECT_FAILED
        }
        StopReason::Sigint => 130,
        StopReason::Sigterm => 143,
        StopReason::DurationOver
        | StopReason::UserStop
        | StopReason::LeaseLapsed
        | StopReason::EmergencyStop
        | StopReason::Shutdown => EXIT_OK,
    }
}

/// Prints one event of a run as a line.
pub(super) fn print_event(event: &Event, duration: Duration, out: &mut dyn Write) {
    match &event.kind {
        EventKind::Phase {
            phase: Phase::Injected,
        } => {
            let _ = writeln!(
                out,
                "holding for {} (Ctrl-C or SIGTERM reverts now)",
                humantime::format_duration(duration)
            );
        }
        EventKind::Phase { .. } => {}
        EventKind::Host { level, message } => {
            let _ = match *level {
                "error" => writeln!(out, "ERROR: {message}"),
                "warn" => writeln!(out, "note: {message}"),
                _ => writeln!(out, "{message}"),
            };
        }
        EventKind::Log {
            plugin,
            level,
            message,
        } => {
            let _ = writeln!(out, "  [{plugin}] {level}: {message}");
        }
    }
}

/// Runs `faultline inject`.
pub async fn inject(
    args: InjectArgs,
    hub: &HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    // Handlers first: a signal during load or inject must still lead to a revert.
    let stop = interrupted();
    tokio::pin!(stop);
    if let Some(reason) = crate::estop::active(state_dir).await {
        let _ = writeln!(
            out,
            "error: an emergency stop is active ({reason}): clear it with `faultline emergency-stop --clear`"
        );
        return EXIT_REFUSED;
    }
    let loaded = match load(&args.load, hub, state_dir, None, Vec::new(), out).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    run_fault(loaded, &args, &mut stop, out).await
}

/// Runs a loaded fault through the execution lifecycle, printing its events as they happen.
pub(super) async fn run_fault(
    loaded: Loaded,
    args: &InjectArgs,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = StopReason>>,
    out: &mut dyn Write,
) -> u8 {
    let Loaded {
        host,
        plugin,
        params,
        ..
    } = loaded;
    let fault = match plugin {
        Plugin::Fault(f) => f,
        Plugin::Probe(p) => {
            let _ = writeln!(
                out,
                "error: {} is a probe: run it with `faultline probe`",
                p.label()
            );
            return EXIT_USAGE;
        }
    };
    let spec = Spec {
        id: args.load.execution_id.clone().unwrap_or_else(new_id),
        params,
        duration: args.duration,
        lease: None,
    };
    let _ = writeln!(out, "execution {}", spec.id);
    let execution = Execution::new(host, Arc::new(fault), spec);
    let handle = execution.handle();
    let mut events = handle.subscribe();
    // A task of its own: should the run panic, its guard reverts and the outcome still comes.
    let running = tokio::spawn(execution.run());
    let finished = handle.finished();
    tokio::pin!(finished);
    let mut signalled = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut finished => break outcome,
            event = events.recv() => match event {
                Ok(e) => print_event(&e, args.duration, out),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let _ = writeln!(out, "({n} events not shown)");
                }
                Err(broadcast::error::RecvError::Closed) => {}
            },
            reason = stop.as_mut(), if !signalled => {
                signalled = true;
                handle.stop(reason);
            }
        }
    };
    while let Ok(e) = events.try_recv() {
        print_event(&e, args.duration, out);
    }
    let _ = running.await;
    if !outcome.is_clean() {
        let _ = writeln!(out, "REVERT FAILED: the host may still be changed:");
        for f in &outcome.revert_failures {
            let _ = writeln!(out, "  - {f}");
        }
        let _ = writeln!(
            out,
            "the journal keeps these; `faultline recover` retries them"
        );
    }
    exit_code(&outcome)
}

/// The exit code of a probe's verdict.
pub(super) fn probe_exit_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Passed => EXIT_OK,
        Verdict::Failed => EXIT_PROBE_FAILED,
        Verdict::NotApplicable => EXIT_PROBE_NOT_APPLICABLE,
    }
}

/// Runs `faultline probe`.
pub async fn probe(
    args: ProbeArgs,
    hub: &HubConfig,
    config: Option<&Path>,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    // The operator's own CAs (`[outbound] ca_files` of --config), besides webpki's roots.
    let roots = match config.map(|c| OutboundConfig::load(c).and_then(|o| o.trusted_roots())) {
        None => Vec::new(),
        Some(Ok(roots)) => roots,
        Some(Err(e)) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    // With --json, stdout carries the one JSON object: what loading says is kept for an error.
    let mut chatter = Vec::new();
    let loaded = {
        let sink: &mut dyn Write = if args.json { &mut chatter } else { out };
        load(&args.load, hub, state_dir, None, roots, sink).await
    };
    let Loaded {
        host,
        plugin,
        params,
        lines,
    } = match loaded {
        Ok(l) => l,
        Err(code) => {
            let _ = out.write_all(&chatter);
            return code;
        }
    };
    let probe = match plugin {
        Plugin::Probe(p) => p,
        Plugin::Fault(f) => {
            let _ = writeln!(
                out,
                "error: {} is a fault: run it with `faultline inject`",
                f.label()
            );
            return EXIT_USAGE;
        }
    };
    let execution = args.load.execution_id.clone().unwrap_or_else(new_id);
    let checked = probe.judge(&host, &execution, &params).await;
    if args.json {
        let (kept, dropped) = lines.take();
        let log: Vec<serde_json::Value> = kept
            .into_iter()
            .map(|l| serde_json::json!({ "level": l.level.to_string(), "message": l.message }))
            .collect();
        let mut value = serde_json::json!({
            "execution": execution,
            "probe": probe.label(),
            "digest": probe.digest,
            "log": log,
            "log_dropped": dropped,
        });
        if let (Some(v), Ok(serde_json::Value::Object(c))) =
            (value.as_object_mut(), serde_json::to_value(&checked))
        {
            v.extend(c);
        }
        let _ = writeln!(out, "{value}");
    } else {
        lines.flush(out);
        let value = checked
            .value
            .map(|v| format!(" (value {v})"))
            .unwrap_or_default();
        let _ = match checked.verdict {
            Verdict::Passed | Verdict::Failed => writeln!(
                out,
                "probe {} in {:.1} ms: {}{value}",
                if checked.verdict == Verdict::Passed {
                    "passed"
                } else {
                    "FAILED"
                },
                checked.elapsed_ms,
                checked.message
            ),
            Verdict::NotApplicable => writeln!(
                out,
                "probe NOT APPLICABLE (it could not run) after {:.1} ms: {}",
                checked.elapsed_ms, checked.message
            ),
        };
    }
    probe_exit_code(checked.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_tick_exits_like_a_failed_inject_unless_the_revert_failed() {
        assert_eq!(
            exit_code(&Outcome::ended(StopReason::TickFailed)),
            EXIT_INJECT_FAILED
        );
        let mut dirty = Outcome::ended(StopReason::TickFailed);
        dirty
            .revert_failures
            .push("change 1 could not be undone".into());
        assert_eq!(exit_code(&dirty), EXIT_REVERT_FAILED);
    }
}
