//! `faultline inject` and `faultline probe`: load a component, run it once, always revert.

use super::{
    EXIT_INJECT_FAILED, EXIT_OK, EXIT_PROBE_FAILED, EXIT_REFUSED, EXIT_REVERT_FAILED, EXIT_USAGE,
    params,
};
use crate::capability::LogLine;
use crate::host::{CallError, Host, HostConfig, Kind, LoadError, Plugin, Reverted, elapsed_ms};
use crate::policy::Policy;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// Where the component comes from and what it may do.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The component: a `.wasm` file, or a hub reference (`process-pause`, `name@^0.1`,
    /// `sha256:<hex>`) resolved in the bundled hub.
    pub component: PathBuf,
    /// Parameters as key=value (repeatable); values that parse as JSON are taken as JSON.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Parameters as one JSON object (`--param` pairs override its keys).
    #[arg(long)]
    pub params_json: Option<String>,
    /// The operator's policy (TOML). Without one nothing is granted.
    #[arg(long, env = "FAULTLINE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Linear memory the component may use, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Deadline for each call into the component.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
    /// An id for this execution (logs and journal); generated when absent.
    #[arg(long)]
    pub execution_id: Option<String>,
}

/// `faultline inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// How long to keep the fault injected (`30s`, `2m`).
    #[arg(long, short = 'd', default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

/// `faultline probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Plug-in log lines, buffered until the command prints them.
#[derive(Clone, Default)]
pub(super) struct Lines(Arc<Mutex<Vec<LogLine>>>);

impl Lines {
    pub(super) fn sink(&self) -> crate::capability::LogSink {
        let lines = self.0.clone();
        let forward = crate::host::tracing_log();
        Arc::new(move |line: LogLine| {
            forward(line.clone());
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        })
    }

    pub(super) fn flush(&self, out: &mut dyn Write) {
        if let Ok(mut l) = self.0.lock() {
            for line in l.drain(..) {
                let _ = writeln!(
                    out,
                    "  [{}] {:?}: {}",
                    line.plugin, line.level, line.message
                );
            }
        }
    }
}

pub(super) fn execution_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("ex-{ms}-{:04x}", rand::random::<u16>())
    })
}

/// A host and a loaded plug-in, or the exit code that says why not.
pub(super) struct Loaded {
    pub host: Host,
    pub plugin: Plugin,
    pub params: String,
    pub lines: Lines,
}

pub(super) async fn load(
    args: &LoadArgs,
    state_dir: &Path,
    policy: Option<Policy>,
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
    let bytes = read_component(&args.component, state_dir)
        .await
        .map_err(|e| fail(out, EXIT_USAGE, format!("{e:#}")))?;
    let mut config = HostConfig::new(state_dir.to_path_buf());
    config.memory_limit = args.memory_mib << 20;
    config.call_timeout = args.call_timeout;
    config.revert_timeout = args.call_timeout;
    let lines = Lines::default();
    let host = Host::new(config, lines.sink())
        .map_err(|e| fail(out, EXIT_USAGE, format!("cannot start the host: {e:#}")))?;
    let start = Instant::now();
    let plugin = match host.load(&bytes, &policy).await {
        Ok(p) => p,
        Err(LoadError::Host(e)) => return Err(fail(out, EXIT_USAGE, format!("{e:#}"))),
        Err(e) => {
            let name = args.component.display();
            return Err(fail(out, EXIT_REFUSED, format!("{name} refused: {e}")));
        }
    };
    let _ = writeln!(
        out,
        "loaded {} ({}, {}) in {:.1} ms",
        plugin.label(),
        plugin.kind,
        short(&plugin.digest),
        elapsed_ms(start)
    );
    if let Err(e) = plugin.validate(&host, &params).await {
        lines.flush(out);
        return Err(fail(out, EXIT_USAGE, format!("parameters refused: {e}")));
    }
    Ok(Loaded {
        host,
        plugin,
        params,
        lines,
    })
}

/// Reads a component file, or pulls a hub reference (verified) from the bundled hub.
pub(super) async fn read_component(what: &Path, state_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let text = what.display().to_string();
    let looks_like_ref = !what.exists() && !text.contains('/') && !text.ends_with(".wasm");
    if !looks_like_ref {
        return std::fs::read(what).with_context(|| format!("cannot read component {text}"));
    }
    let mut hub = crate::hub::Hub::open(super::default_hub_config(state_dir))
        .context("cannot open the bundled hub")?;
    let report = hub.sync().await;
    for problem in report.problems() {
        tracing::warn!("hub: {problem}");
    }
    let resolved = hub
        .resolve(&text)
        .with_context(|| format!("{text} is neither a file nor a package of the bundled hub"))?;
    let pulled = hub
        .pull(&resolved, &crate::host::ImportLister::new())
        .await
        .with_context(|| format!("cannot pull {text}"))?;
    std::fs::read(&pulled.path).with_context(|| format!("cannot read {}", pulled.path.display()))
}

pub(super) fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// A signal that cuts the fault short: its name and the exit code it leads to.
pub(super) struct Stop(&'static str, u8);

/// Installs the SIGTERM and SIGINT handlers now (not when first polled: until then a signal
/// kills the process with its default action, without a revert) and returns the future that
/// resolves on either.
fn interrupted() -> impl std::future::Future<Output = Stop> {
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
            _ = term.recv() => Stop("SIGTERM", 143),
            _ = int.recv() => Stop("SIGINT", 130),
        }
    }
}

pub(super) fn report_revert(r: &Reverted, start: Instant, out: &mut dyn Write) -> bool {
    if let Some(e) = &r.guest_error {
        let _ = writeln!(
            out,
            "guest revert failed ({e}); the host journal undid its changes"
        );
    }
    if r.failures.is_empty() {
        let _ = writeln!(out, "reverted in {:.1} ms: host clean", elapsed_ms(start));
        true
    } else {
        let _ = writeln!(out, "REVERT FAILED: the host may still be changed:");
        for f in &r.failures {
            let _ = writeln!(out, "  - {f}");
        }
        let _ = writeln!(
            out,
            "the journal keeps these; `faultline recover` retries them"
        );
        false
    }
}

/// Runs `faultline inject`.
pub async fn inject(args: InjectArgs, state_dir: &Path, out: &mut dyn Write) -> u8 {
    // Handlers first: a signal during load or inject must still lead to a revert.
    let stop = interrupted();
    tokio::pin!(stop);
    let loaded = match load(&args.load, state_dir, None, out).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    run_fault(&loaded, &args, &mut stop, out).await
}

pub(super) async fn run_fault(
    loaded: &Loaded,
    args: &InjectArgs,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = Stop>>,
    out: &mut dyn Write,
) -> u8 {
    let Loaded {
        host,
        plugin,
        params,
        lines,
    } = loaded;
    if plugin.kind != Kind::Fault {
        let _ = writeln!(
            out,
            "error: {} is a probe: run it with `faultline probe`",
            plugin.label()
        );
        return EXIT_USAGE;
    }
    if !plugin.description.revertible {
        let _ = writeln!(
            out,
            "note: {} cannot be undone (revertible = false): its effect stays after revert",
            plugin.label()
        );
    }
    let execution = execution_id(args.load.execution_id.clone());
    let start = Instant::now();
    let injected = tokio::select! {
        r = plugin.inject(host, &execution, params, args.duration) => Ok(r),
        Stop(name, code) = stop.as_mut() => {
            let _ = writeln!(out, "{name} during inject: reverting");
            Err(code)
        }
    };
    lines.flush(out);
    let (state, mut code) = match injected {
        Ok(Ok(i)) => {
            let _ = writeln!(
                out,
                "injected {} in {:.1} ms ({} change{}, execution {execution})",
                plugin.label(),
                elapsed_ms(start),
                i.changes.len(),
                if i.changes.len() == 1 { "" } else { "s" }
            );
            (Some(i.state), EXIT_OK)
        }
        Ok(Err(e)) => {
            let _ = writeln!(out, "inject failed: {e}; reverting");
            (None, EXIT_INJECT_FAILED)
        }
        Err(code) => (None, code),
    };
    if state.is_some() {
        let _ = writeln!(
            out,
            "holding for {} (Ctrl-C or SIGTERM reverts now)",
            humantime::format_duration(args.duration)
        );
        tokio::select! {
            _ = tokio::time::sleep(args.duration) => {}
            Stop(name, c) = stop.as_mut() => {
                let _ = writeln!(out, "{name}: reverting early");
                code = c;
            }
        }
    }
    let start = Instant::now();
    let reverted = plugin.revert(host, &execution, state.as_deref()).await;
    lines.flush(out);
    if !report_revert(&reverted, start, out) {
        return EXIT_REVERT_FAILED;
    }
    code
}

/// Runs `faultline probe`.
pub async fn probe(args: ProbeArgs, state_dir: &Path, out: &mut dyn Write) -> u8 {
    let Loaded {
        host,
        plugin,
        params,
        lines,
    } = match load(&args.load, state_dir, None, out).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    if plugin.kind != Kind::Probe {
        let _ = writeln!(
            out,
            "error: {} is a fault: run it with `faultline inject`",
            plugin.label()
        );
        return EXIT_USAGE;
    }
    let execution = execution_id(args.load.execution_id);
    let start = Instant::now();
    let r = plugin.check(&host, &execution, &params).await;
    lines.flush(out);
    match r {
        Ok(o) => {
            let verdict = if o.ok { "passed" } else { "FAILED" };
            let value = o.value.map(|v| format!(" (value {v})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "probe {verdict} in {:.1} ms: {}{value}",
                elapsed_ms(start),
                o.message
            );
            if o.ok { EXIT_OK } else { EXIT_PROBE_FAILED }
        }
        Err(e @ CallError::Guest { .. }) => {
            let _ = writeln!(out, "probe FAILED: {e}");
            EXIT_PROBE_FAILED
        }
        Err(e) => {
            let _ = writeln!(out, "probe FAILED: {e}");
            EXIT_PROBE_FAILED
        }
    }
}
