//! `faultline run EXPERIMENT`: run an experiment, or with `--dry-run` only its pre-run checks.
//!
//! Exit codes (by end state, so pipelines can gate on them):
//!
//! | code | end state |
//! |---|---|
//! | 0 | `COMPLETED`: every probe passed |
//! | 1 | `FAILED`: a probe failed (the system did not hold up) |
//! | 2 | the file or the arguments are wrong (nothing ran) |
//! | 3 | the pre-run checks refused the run (nothing ran) |
//! | 4 | `ERRORED`: a probe could not run, a fault failed, or the timeout passed |
//! | 5 | a revert failed: the host may still be changed (`faultline recover`) |
//! | 8 | `CANCELED` by a stop request or an emergency stop |
//! | 130, 143 | `CANCELED` by SIGINT or SIGTERM (everything reverted) |

use super::{EXIT_OK, EXIT_PROBE_FAILED, EXIT_REFUSED, EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::capability::outbound::config::OutboundConfig;
use crate::execution::StopReason;
use crate::experiment::engine::{self, Options, Stop, Stopper};
use crate::experiment::record::{EndState, LogEntry, Record, Source};
use crate::experiment::{parse, report, store};
use crate::hub::HubConfig;
use crate::policy::Policy;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Exit code: `ERRORED`.
pub const EXIT_ERRORED: u8 = 4;
/// Exit code: `CANCELED` by a stop request or an emergency stop.
pub const EXIT_CANCELED: u8 = 8;

/// `faultline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file (YAML or JSON).
    pub experiment: PathBuf,
    /// Run the pre-run checks only: print each step's resolved targets and the grant that
    /// covers it; inject nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The operator's policy (TOML). Without one nothing is granted.
    #[arg(long, env = "FAULTLINE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Print the run's JSON journal on stdout instead of the live log.
    #[arg(long)]
    pub json: bool,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Memory each component may use, in MiB (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub memory_mib: u16,
    /// Deadline for each call into a component (10ms to 10m).
    #[arg(long, default_value = "10s", value_parser = super::inject::call_timeout)]
    pub call_timeout: Duration,
    /// On agents (`--agent`, `--fleet`): each agent reverts everything unless this command
    /// renews the lease within this long (renewed every third of it). Default 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease: Option<Duration>,
}

/// Runs `faultline run`.
pub async fn run(
    args: RunArgs,
    hub: &HubConfig,
    config: Option<&Path>,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    // Handlers first: a signal during the checks or the run must still lead to a revert.
    let signals = super::inject::interrupted();
    let fail = |out: &mut dyn Write, code: u8, msg: String| {
        let _ = writeln!(out, "error: {msg}");
        code
    };
    if args.lease.is_some() {
        return fail(
            out,
            EXIT_USAGE,
            "--lease applies to runs on agents (--agent URL or --fleet FILE)".into(),
        );
    }
    let file = args.experiment.display().to_string();
    let text = match read_bounded(&args.experiment).await {
        Ok(t) => t,
        Err(e) => return fail(out, EXIT_USAGE, e),
    };
    // Parsing a large file takes a while: on the blocking pool.
    let (text_owned, file_owned) = (text.clone(), file.clone());
    let parsed = tokio::task::spawn_blocking(move || parse::parse(&text_owned, &file_owned)).await;
    let experiment = match parsed {
        Ok(Ok(e)) => e,
        Ok(Err(errors)) => {
            let _ = writeln!(out, "{errors}");
            return EXIT_USAGE;
        }
        Err(e) => return fail(out, EXIT_USAGE, format!("parsing panicked: {e}")),
    };
    let policy = match &args.policy {
        Some(path) => match Policy::load(path) {
            Ok(p) => p,
            Err(e) => return fail(out, EXIT_USAGE, format!("{e:#}")),
        },
        None => Policy::default(),
    };
    let roots = match config.map(|c| OutboundConfig::load(c).and_then(|o| o.trusted_roots())) {
        None => Vec::new(),
        Some(Ok(roots)) => roots,
        Some(Err(e)) => return fail(out, EXIT_USAGE, format!("{e:#}")),
    };
    let options = Options {
        state_dir: state_dir.to_path_buf(),
        hub: hub.clone(),
        policy,
        trusted_roots: roots,
        memory_limit: usize::from(args.memory_mib) << 20,
        call_timeout: args.call_timeout,
    };
    let digest = crate::hub::Digest::of(text.as_bytes()).to_string();
    let (code, _) = execute(experiment, &file, &digest, &options, &args, signals, out).await;
    let _ = out.flush();
    code
}

/// Plans and runs a parsed experiment: the part `faultline demo` shares. Returns the exit
/// code, and the record when the run started.
pub(super) async fn execute(
    experiment: crate::experiment::spec::Experiment,
    file: &str,
    digest: &str,
    options: &Options,
    args: &RunArgs,
    signals: impl std::future::Future<Output = StopReason>,
    out: &mut dyn Write,
) -> (u8, Option<Record>) {
    tokio::pin!(signals);
    // What crashed runs left: their journals are undone before anything new is injected, and
    // the history closes their records as errored (`Store::open`).
    if !args.dry_run {
        match crate::host::Host::new(
            crate::host::HostConfig::new(options.state_dir.clone()),
            crate::host::tracing_log(),
        ) {
            Ok(host) => match crate::host::recover::recover(&host).await {
                Ok(r) if r.undone > 0 || !r.failures.is_empty() => {
                    super::recover::print_report(&r, out);
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = writeln!(out, "error: recovery failed: {e:#}");
                    return (EXIT_REVERT_FAILED, None);
                }
            },
            Err(e) => {
                let _ = writeln!(out, "error: cannot start the host: {e:#}");
                return (EXIT_USAGE, None);
            }
        }
    }
    // A signal during the checks ends the command at once: nothing is injected yet.
    let planned = tokio::select! {
        p = engine::plan(experiment, file, digest, options) => p,
        reason = &mut signals => {
            let _ = writeln!(out, "{reason} during the pre-run checks: nothing was injected");
            return (signal_code(reason), None);
        }
    };
    let plan = match planned {
        Ok(p) => p,
        Err(refused) => {
            let _ = writeln!(out, "{refused}");
            return (EXIT_REFUSED, None);
        }
    };
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if args.dry_run {
        print_plan(&plan, out);
        return (EXIT_OK, None);
    }
    let history = store::history_path(&options.state_dir);
    let store = match tokio::task::spawn_blocking(move || store::Store::open(&history)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            let _ = writeln!(out, "error: the history cannot be opened: {e:#}");
            return (EXIT_USAGE, None);
        }
        Err(e) => {
            let _ = writeln!(out, "error: opening the history panicked: {e}");
            return (EXIT_USAGE, None);
        }
    };
    let id = engine::new_id();
    if !args.json {
        let _ = writeln!(out, "execution {id}");
    }
    let (tx, _) = watch::channel(None::<Stop>);
    let stopper = Stopper::from(tx);
    let live = plan.subscribe();
    let planned = plan.planned();
    let log_handle = engine::LogHandle::of(&plan);
    let running = tokio::spawn(engine::run(plan, id.clone(), store, stopper.clone()));
    let record = follow(
        running,
        live,
        signals.as_mut(),
        &stopper,
        planned,
        args.json,
        out,
    )
    .await;
    let Some(record) = record else {
        let _ = writeln!(
            out,
            "error: the run's task failed; `faultline recover` undoes what it left"
        );
        return (EXIT_REVERT_FAILED, None);
    };
    let log = log_handle.kept();
    if args.json {
        let _ = writeln!(out, "{}", report::json(&record, &log));
    } else {
        print_verdict(&record, out);
    }
    for (path, text) in [
        (
            &args.junit,
            args.junit.as_ref().map(|_| report::junit(&record)),
        ),
        (
            &args.html,
            args.html.as_ref().map(|_| report::html(&record, &log)),
        ),
    ] {
        if let (Some(path), Some(text)) = (path, text) {
            let p = path.clone();
            match tokio::task::spawn_blocking(move || std::fs::write(&p, text)).await {
                Ok(Ok(())) => {
                    if !args.json {
                        let _ = writeln!(out, "report: {}", path.display());
                    }
                }
                _ => {
                    let _ = writeln!(out, "error: cannot write {}", path.display());
                }
            }
        }
    }
    (exit_code(&record), Some(record))
}

/// 130 for SIGINT, 143 for SIGTERM (and for any other reason a signal handler gives).
fn signal_code(reason: StopReason) -> u8 {
    if reason == StopReason::Sigint {
        130
    } else {
        143
    }
}

/// The exit code of a finished run.
pub(super) fn exit_code(record: &Record) -> u8 {
    if record.host_changed() {
        return EXIT_REVERT_FAILED;
    }
    match record.end_state {
        Some(EndState::Completed) => EXIT_OK,
        Some(EndState::Failed) => EXIT_PROBE_FAILED,
        Some(EndState::Canceled) => match record.reason.as_deref() {
            Some(r) if r.ends_with("SIGINT") => 130,
            Some(r) if r.ends_with("SIGTERM") => 143,
            _ => EXIT_CANCELED,
        },
        Some(EndState::Errored) | None => EXIT_ERRORED,
    }
}

/// Reads an experiment file, at most [`crate::experiment::spec::limits::FILE_BYTES`].
pub(super) async fn read_bounded(path: &Path) -> Result<String, String> {
    use tokio::io::AsyncReadExt as _;
    let limit = crate::experiment::spec::limits::FILE_BYTES;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > limit {
        return Err(format!(
            "{} is larger than the {limit} bytes an experiment file may be",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))
}

/// Follows the live log until the run ends: lines (and a progress bar on a terminal), and
/// signals turned into a stop.
async fn follow(
    running: tokio::task::JoinHandle<Record>,
    mut live: broadcast::Receiver<LogEntry>,
    signals: impl std::future::Future<Output = StopReason>,
    stopper: &Stopper,
    planned: Duration,
    quiet: bool,
    out: &mut dyn Write,
) -> Option<Record> {
    let bar = progress(planned, quiet);
    tokio::pin!(running);
    tokio::pin!(signals);
    let mut signalled = false;
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = &mut running => {
                while let Ok(e) = live.try_recv() {
                    show(&e, &bar, quiet, out);
                }
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return r.ok();
            }
            e = live.recv() => match e {
                Ok(e) => show(&e, &bar, quiet, out),
                Err(broadcast::error::RecvError::Lagged(n)) if !quiet => {
                    let _ = writeln!(out, "({n} log lines not shown; `faultline executions log` has them)");
                }
                Err(_) => {}
            },
            reason = &mut signals, if !signalled => {
                signalled = true;
                if !quiet {
                    let _ = writeln!(out, "{reason}: stopping the run, reverting every fault");
                }
                stopper.stop(Stop::Execution(reason));
            }
            _ = tick.tick() => {
                if let Some(bar) = &bar {
                    bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                }
            }
        }
    }
}

/// A progress bar over the planned time, on a terminal that wants colour; none otherwise.
fn progress(planned: Duration, quiet: bool) -> Option<indicatif::ProgressBar> {
    let plain = quiet || std::env::var_os("NO_COLOR").is_some() || !std::io::stderr().is_terminal();
    if plain {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(
            u64::try_from(planned.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} planned {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(humantime::format_duration(planned).to_string());
    Some(bar)
}

fn show(e: &LogEntry, bar: &Option<indicatif::ProgressBar>, quiet: bool, out: &mut dyn Write) {
    if quiet {
        return;
    }
    let line = log_line(e);
    match bar {
        Some(bar) => bar.suspend(|| {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }),
        None => {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One log line for people: time, source, level, step, message; plug-in text escaped.
pub(super) fn log_line(e: &LogEntry) -> String {
    let time =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(e.at_ms))
            .to_string();
    let time = time.get(11..23).unwrap_or(&time).to_string();
    let source = match e.source {
        Source::Engine => "run",
        Source::Host => "host",
        Source::Guest => "guest",
        Source::Probe => "probe",
    };
    // Guest and host text, escaped: a component must not drive the terminal.
    let step = e
        .step
        .as_ref()
        .map(|s| format!(" [{}]", super::executions::plain(s)))
        .unwrap_or_default();
    format!(
        "{time} {source:5} {:5}{step} {}",
        super::executions::plain(&e.level),
        super::executions::plain(&e.message)
    )
}

/// `--dry-run`: what each step will touch and the grant that covers it.
fn print_plan(plan: &engine::Plan, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "dry run of {} ({}): the pre-run checks passed; nothing was injected",
        plan.experiment.name, plan.file
    );
    for (lane, steps) in &plan.lanes {
        let _ = writeln!(out, "lane {lane}:");
        for step in steps {
            match step {
                engine::PlannedStep::Wait(name, d) => {
                    let _ = writeln!(out, "  {name}: wait {}", humantime::format_duration(*d));
                }
                engine::PlannedStep::Probe(i) => {
                    let p = &plan.probes[*i];
                    let _ = writeln!(
                        out,
                        "  {}: probe {} ({})",
                        p.name,
                        p.plugin.label(),
                        p.params
                    );
                }
                engine::PlannedStep::Fault(i) => {
                    let f = &plan.faults[*i];
                    let _ = writeln!(
                        out,
                        "  {}: fault {} for {}, weight {}",
                        f.name,
                        f.plugin.label(),
                        humantime::format_duration(f.duration),
                        f.weight
                    );
                    if let Some(why) = &f.skip {
                        let _ = writeln!(out, "    skipped: {why}");
                    }
                    for t in &f.targets {
                        let _ = writeln!(
                            out,
                            "    target {}: params {}\n      covered by {}",
                            t.label,
                            t.params,
                            t.grant.as_deref().unwrap_or("the grant of its capabilities (the call is checked against the scope)")
                        );
                    }
                }
            }
        }
    }
    for p in plan.probes.iter().filter(|p| p.mode.is_some()) {
        let _ = writeln!(
            out,
            "probe {}: {} {}, judges {}",
            p.name,
            p.plugin.label(),
            p.mode.map_or("probe action", |m| m.as_str()),
            if p.faults.is_empty() {
                "no fault".to_string()
            } else {
                p.faults.join(", ")
            }
        );
    }
}

/// The verdict, for people.
fn print_verdict(r: &Record, out: &mut dyn Write) {
    let _ = writeln!(out, "\nfaults:");
    for f in &r.faults {
        let _ = writeln!(
            out,
            "  {:24} {:22} weight {:2}  probes passed {}{}",
            f.name,
            f.status.as_str(),
            f.weight,
            f.probe_success
                .map_or_else(|| "-".into(), |p| format!("{p:.1} %")),
            f.message
                .as_ref()
                .map(|m| format!("  ({m})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "probes:");
    for p in &r.probes {
        let passed = p
            .checks
            .iter()
            .filter(|c| c.verdict == crate::host::Verdict::Passed)
            .count();
        let _ = writeln!(
            out,
            "  {:24} {:15} {passed}/{} checks passed{}",
            p.name,
            p.verdict.map_or("not run", |v| v.as_str()),
            p.checks.len(),
            p.success_rate
                .map(|s| format!(" ({s:.1} %)"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "experiment {}: {} — {}, resilience score {}{}",
        r.name,
        r.end_state.map_or("-", EndState::as_str),
        r.status.as_str(),
        r.score.map_or_else(|| "-".into(), |s| format!("{s:.1}")),
        r.reason
            .as_ref()
            .map(|x| format!("\n  reason: {x}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "history: faultline executions show {}", r.id);
}
