//! The experiment engine: the pre-run checks ([`plan`]) and the run ([`run`]).
//!
//! **Before the run** every check is made and every problem reported at once; any problem
//! refuses the run with nothing injected: each fault and probe resolves in the hubs (only the
//! experiment's `hubs`, when it names some) and loads under the operator's policy (which must
//! grant every interface it imports); each parameter set passes the component's schema and its
//! `validate`; each fault step resolves, now, to its targets, and a grant covers every target;
//! no emergency stop is active.
//!
//! **The run**:
//!
//! ```text
//! start-of-test and edge probes (before) ─► lanes in parallel, continuous probes every
//! interval, on-chaos probes while a fault is injected ─► end-of-test and edge probes (after)
//! ```
//!
//! Each target of a fault step runs as one [`Execution`] (journalled, reverted whatever
//! happens). A stop — a signal, a stop request, an emergency stop, the experiment's timeout, a
//! failed stop-on-failure probe — stops every execution (each reverts through the journal),
//! marks what never ran `skipped`, and skips the probes after. Statuses and the score follow
//! the rules in [`super::record`].

use super::record::{
    Activity, Check, EndState, FaultRecord, FaultStatus, LogEntry, Moment, ProbeRecord, Record,
    Source, Status, Tally, TargetRun,
};
use super::spec::{Experiment, OnEmpty, ProbeMode};
use super::store::Store;
use super::target::{self, Accepts, Resolved};
use crate::capability::LogLine;
use crate::component::Source as ComponentSource;
use crate::execution::{EventKind, Execution, Handle, Outcome, Spec, StopReason};
use crate::host::{FaultPlugin, Host, HostConfig, LoadError, Plugin, ProbePlugin, Verdict};
use crate::hub::{Hub, HubConfig};
use crate::policy::{Identity, Policy};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// Log lines a run keeps in memory for its reports (the history keeps more; the rest are
/// counted).
const MEMORY_LOG: usize = 20_000;

/// How the engine loads components: everything but the experiment itself.
pub struct Options {
    /// Where the journal, the compile cache and the history live.
    pub state_dir: PathBuf,
    /// The hubs references resolve in.
    pub hub: HubConfig,
    /// The operator's policy.
    pub policy: Policy,
    /// Certificate authorities probes trust besides webpki's roots.
    pub trusted_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Memory each component may use, in bytes.
    pub memory_limit: usize,
    /// Deadline of each call into a component.
    pub call_timeout: Duration,
}

/// Why a run was refused before it started: every problem found, each naming its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The problems.
    pub problems: Vec<String>,
    /// Whether an emergency stop is among them.
    pub emergency_stop: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the pre-run checks refused the run:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// One target of a planned fault.
#[derive(Debug, Clone)]
pub struct PlannedTarget {
    /// For people.
    pub label: String,
    /// The parameters the fault runs with, a JSON object.
    pub params: serde_json::Value,
    /// The grant that covers it, when the target names something a grant can cover.
    pub grant: Option<String>,
    /// A process target's pid and start time: checked again just before inject, so a pid
    /// reused since the pre-run check is never touched.
    pub process: Option<(u32, u64)>,
}

/// A fault step, checked.
pub struct PlannedFault {
    /// The step's name.
    pub name: String,
    /// Its lane's name.
    pub lane: String,
    /// The reference in the file.
    pub reference: String,
    /// The loaded fault.
    pub plugin: Arc<FaultPlugin>,
    /// Its weight.
    pub weight: u8,
    /// How long it is held.
    pub duration: Duration,
    /// Its targets (one run each).
    pub targets: Vec<PlannedTarget>,
    /// Why it will be skipped (an empty selection with `on_empty: skip`).
    pub skip: Option<String>,
}

/// A probe, checked: an experiment probe or a probe action.
pub struct PlannedProbe {
    /// Its name.
    pub name: String,
    /// The reference in the file.
    pub reference: String,
    /// The loaded probe.
    pub plugin: Arc<ProbePlugin>,
    /// Its parameters, JSON.
    pub params: String,
    /// When it runs; `None` for a probe action.
    pub mode: Option<ProbeMode>,
    /// Deadline per attempt.
    pub timeout: Duration,
    /// Between checks, and between attempts.
    pub interval: Duration,
    /// Attempts per check.
    pub attempts: u32,
    /// Before the first check.
    pub initial_delay: Duration,
    /// A failed check stops the run.
    pub stop_on_failure: bool,
    /// Continuous and on-chaos: the percentage of checks that must pass.
    pub success_rate: f64,
    /// The fault steps it judges.
    pub faults: Vec<String>,
}

/// A step of a lane, checked.
pub enum PlannedStep {
    /// A fault: an index into [`Plan::faults`].
    Fault(usize),
    /// A pause.
    Wait(String, Duration),
    /// A probe action: an index into [`Plan::probes`].
    Probe(usize),
}

/// An experiment that passed its pre-run checks, ready to [`run`].
pub struct Plan {
    /// The experiment.
    pub experiment: Experiment,
    /// The file, as given.
    pub file: String,
    /// The file's digest.
    pub file_digest: String,
    /// The host every fault and probe runs on.
    pub host: Arc<Host>,
    /// Fault steps, in lane order.
    pub faults: Vec<PlannedFault>,
    /// Experiment probes, then probe actions.
    pub probes: Vec<PlannedProbe>,
    /// The lanes: their names and steps.
    pub lanes: Vec<(String, Vec<PlannedStep>)>,
    /// The longest the run may take.
    pub timeout: Duration,
    /// Hub warnings (yanked, deprecated).
    pub warnings: Vec<String>,
    /// How long each component took to load (compile or read from the cache, and check).
    pub loads: Vec<ComponentLoad>,
    /// Who starts the run (an agent's token name), for the record; `None` from the CLI.
    pub started_by: Option<String>,
    log: LogFan,
}

/// One component loaded by the pre-run checks, for the agent's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentLoad {
    /// The reference in the file.
    pub reference: String,
    /// `fault` or `probe`.
    pub kind: &'static str,
    /// Seconds the host took to load and check it.
    pub seconds: f64,
}

impl Plan {
    /// A live feed of the run's log, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEntry> {
        self.log.live.subscribe()
    }

    /// The time the lanes are planned to take (the longest lane).
    pub fn planned(&self) -> Duration {
        self.lanes
            .iter()
            .map(|(_, steps)| self.lane_time(steps))
            .max()
            .unwrap_or_default()
    }

    fn lane_time(&self, steps: &[PlannedStep]) -> Duration {
        steps
            .iter()
            .map(|s| match s {
                PlannedStep::Fault(i) => self.faults[*i].duration,
                PlannedStep::Wait(_, d) => *d,
                PlannedStep::Probe(i) => self.probes[*i].worst_case(),
            })
            .sum()
    }
}

impl PlannedProbe {
    /// The longest one check can take: every attempt to its deadline, the pauses between.
    fn worst_case(&self) -> Duration {
        (self.timeout + self.interval) * self.attempts
    }
}

/// Where a run's log lines go: a live feed, the memory kept for reports, the history.
#[derive(Clone)]
struct LogFan {
    live: broadcast::Sender<LogEntry>,
    kept: Arc<Mutex<(Vec<LogEntry>, u64)>>,
    /// Lines not yet written to the history.
    pending: Arc<Mutex<Vec<LogEntry>>>,
    /// Execution id → step name, for guest lines.
    steps: Arc<Mutex<HashMap<String, String>>>,
}

impl LogFan {
    fn new() -> LogFan {
        LogFan {
            live: broadcast::channel(1024).0,
            kept: Arc::default(),
            pending: Arc::default(),
            steps: Arc::default(),
        }
    }

    fn push(&self, entry: LogEntry) {
        {
            let mut kept = lock(&self.kept);
            if kept.0.len() < MEMORY_LOG {
                kept.0.push(entry.clone());
            } else {
                kept.1 += 1;
            }
        }
        lock(&self.pending).push(entry.clone());
        let _ = self.live.send(entry);
    }

    fn say(&self, source: Source, level: &str, step: Option<&str>, message: String) {
        self.push(LogEntry {
            at_ms: now_ms(),
            source,
            level: level.to_string(),
            step: step.map(str::to_string),
            message,
        });
    }

    fn engine(&self, level: &str, step: Option<&str>, message: String) {
        self.say(Source::Engine, level, step, message);
    }

    /// The sink for the host's plug-in log lines: each goes to the step that ran it.
    fn guest_sink(&self) -> crate::capability::LogSink {
        let fan = self.clone();
        let forward = crate::host::tracing_log();
        Arc::new(move |line: LogLine| {
            let step = lock(&fan.steps).get(&line.execution).cloned();
            fan.say(
                Source::Guest,
                line.level.as_str(),
                step.as_deref(),
                format!("[{}] {}", line.plugin, line.message),
            );
            forward(line);
        })
    }

    fn name_execution(&self, execution: &str, step: &str) {
        lock(&self.steps).insert(execution.to_string(), step.to_string());
    }

    fn take_pending(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.pending))
    }

    fn kept(&self) -> Vec<LogEntry> {
        let kept = lock(&self.kept);
        let mut lines = kept.0.clone();
        if kept.1 > 0 {
            lines.push(LogEntry {
                at_ms: now_ms(),
                source: Source::Engine,
                level: "warn".into(),
                step: None,
                message: format!("{} more log lines are in the history only", kept.1),
            });
        }
        lines
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data (log lines, a record being filled in): usable after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs the pre-run checks: resolves, loads and validates every component, resolves every
/// target and the grant that covers it, and checks the emergency stop. Returns the plan, or
/// every problem found. Opens (and syncs) the hubs of `options` for this plan.
pub async fn plan(
    experiment: Experiment,
    file: &str,
    file_digest: &str,
    options: &Options,
) -> Result<Plan, Refused> {
    plan_in(experiment, file, file_digest, options, HubChoice::Open).await
}

/// [`plan`] against hubs already open and synced (the agent keeps its own in sync): `None`
/// when none could be loaded, which refuses every step that names a component.
pub async fn plan_with(
    experiment: Experiment,
    file: &str,
    file_digest: &str,
    options: &Options,
    hub: Option<Arc<Hub>>,
) -> Result<Plan, Refused> {
    plan_in(
        experiment,
        file,
        file_digest,
        options,
        HubChoice::Given(hub),
    )
    .await
}

/// Where a plan's hubs come from.
enum HubChoice {
    /// Open the hubs of the options.
    Open,
    /// These, already synced.
    Given(Option<Arc<Hub>>),
}

async fn plan_in(
    experiment: Experiment,
    file: &str,
    file_digest: &str,
    options: &Options,
    hubs: HubChoice,
) -> Result<Plan, Refused> {
    let mut problems = Vec::new();
    let emergency = crate::estop::active(&options.state_dir).await;
    if let Some(reason) = &emergency {
        problems.push(format!(
            "an emergency stop is active ({reason}): clear it with `faultline emergency-stop --clear`"
        ));
    }
    let log = LogFan::new();
    let mut config = HostConfig::new(options.state_dir.clone());
    config.memory_limit = options.memory_limit;
    config.call_timeout = options.call_timeout;
    config.revert_timeout = options.call_timeout;
    config.trusted_roots = options.trusted_roots.clone();
    let host = match Host::new(config, log.guest_sink()) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            problems.push(format!("cannot start the host: {e:#}"));
            return Err(Refused {
                problems,
                emergency_stop: emergency.is_some(),
            });
        }
    };
    let (hub, warnings) = match hubs {
        HubChoice::Open => match crate::hub::open_hub(options.hub.clone()).await {
            Ok(h) => (Some(Arc::new(h.0)), h.1),
            Err(e) => {
                problems.push(format!("no hub could be loaded: {e}"));
                (None, Vec::new())
            }
        },
        HubChoice::Given(hub) => (hub, Vec::new()),
    };
    let mut loader = Loader {
        host: &host,
        hub: hub.as_deref(),
        experiment: &experiment,
        policy: &options.policy,
        loaded: HashMap::new(),
        warnings,
        loads: Vec::new(),
    };
    let mut faults = Vec::new();
    let mut probes = Vec::new();
    let mut lanes = Vec::new();
    for (i, lane) in experiment.lanes.iter().enumerate() {
        let lane_name = experiment.lane_name(i);
        let mut steps = Vec::new();
        for (j, step) in lane.steps.iter().enumerate() {
            let name = experiment.step_name(i, j);
            if let Some(wait) = step.wait {
                steps.push(PlannedStep::Wait(name, wait.get()));
            } else if let Some(reference) = &step.fault {
                let Some(plugin) = loader
                    .load(reference)
                    .await
                    .and_then(Component::fault)
                    .map_err(|e| problems.push(format!("step {name}: {e}")))
                    .ok()
                else {
                    continue;
                };
                let planned = plan_fault(
                    &host,
                    &plugin,
                    step,
                    &name,
                    &lane_name,
                    reference,
                    &mut problems,
                )
                .await;
                steps.push(PlannedStep::Fault(faults.len()));
                faults.push(planned);
            } else if let Some(reference) = &step.probe {
                let params = object_text(step.params.as_ref());
                let Some(plugin) = loader
                    .load(reference)
                    .await
                    .and_then(Component::probe)
                    .map_err(|e| problems.push(format!("step {name}: {e}")))
                    .ok()
                else {
                    continue;
                };
                if let Err(e) = plugin.validate(&host, &params).await {
                    problems.push(format!("step {name}: parameters refused: {e}"));
                }
                steps.push(PlannedStep::Probe(probes.len()));
                probes.push(PlannedProbe {
                    name: name.clone(),
                    reference: reference.clone(),
                    plugin,
                    params,
                    mode: None,
                    timeout: step.timeout.map_or(Duration::from_secs(10), |t| t.get()),
                    interval: Duration::from_secs(1),
                    attempts: step.attempts.unwrap_or(1),
                    initial_delay: Duration::ZERO,
                    stop_on_failure: step.stop_on_failure.unwrap_or(false),
                    success_rate: 100.0,
                    faults: Vec::new(),
                });
            }
        }
        lanes.push((lane_name, steps));
    }
    let fault_names: Vec<String> = faults.iter().map(|f| f.name.clone()).collect();
    for p in &mut probes {
        // A probe action judges every fault, like an experiment probe without `faults`.
        p.faults = fault_names.clone();
    }
    for spec in &experiment.probes {
        let params = object_text(spec.params.as_ref());
        let plugin = match loader.load(&spec.probe).await.and_then(Component::probe) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("probe {}: {e}", spec.name));
                continue;
            }
        };
        if let Err(e) = plugin.validate(&host, &params).await {
            problems.push(format!("probe {}: parameters refused: {e}", spec.name));
        }
        probes.push(PlannedProbe {
            name: spec.name.clone(),
            reference: spec.probe.clone(),
            plugin,
            params,
            mode: Some(spec.mode),
            timeout: spec.timeout.map_or(Duration::from_secs(10), |t| t.get()),
            interval: spec.interval.map_or(Duration::from_secs(1), |t| t.get()),
            attempts: spec.attempts.unwrap_or(1).max(1),
            initial_delay: spec.initial_delay.map(|t| t.get()).unwrap_or_default(),
            stop_on_failure: spec.stop_on_failure,
            success_rate: spec.success_rate.unwrap_or(100.0),
            faults: spec.faults.clone().unwrap_or_else(|| fault_names.clone()),
        });
    }
    let warnings = std::mem::take(&mut loader.warnings);
    let loads = std::mem::take(&mut loader.loads);
    drop(loader);
    if !problems.is_empty() {
        return Err(Refused {
            problems,
            emergency_stop: emergency.is_some(),
        });
    }
    let mut plan = Plan {
        experiment,
        file: file.to_string(),
        file_digest: file_digest.to_string(),
        host,
        faults,
        probes,
        lanes,
        timeout: Duration::ZERO,
        warnings,
        loads,
        started_by: None,
        log,
    };
    let before_after: Duration = plan
        .probes
        .iter()
        .filter(|p| {
            matches!(
                p.mode,
                Some(ProbeMode::StartOfTest | ProbeMode::EndOfTest | ProbeMode::Edge)
            )
        })
        .map(|p| p.initial_delay + p.worst_case())
        .sum();
    plan.timeout = plan.experiment.timeout.map_or_else(
        || plan.planned() + before_after + Duration::from_secs(60),
        |t| t.get(),
    );
    Ok(plan)
}

fn object_text(params: Option<&serde_json::Map<String, serde_json::Value>>) -> String {
    serde_json::Value::Object(params.cloned().unwrap_or_default()).to_string()
}

/// Fetches a reference from the hubs the experiment allows; refuses local paths.
async fn fetch(
    hub: Option<&Hub>,
    experiment: &Experiment,
    reference: &str,
    warnings: &mut Vec<String>,
) -> Result<crate::component::Fetched, String> {
    let source = ComponentSource::from_request(reference)?;
    let hub = hub.ok_or_else(|| "no hub is loaded".to_string())?;
    let fetched = source
        .fetch(Some(hub))
        .await
        .map_err(|e| format!("{e:#}"))?;
    if !experiment.hubs.is_empty() {
        let from = fetched.identity.origin.as_ref().map(|o| o.hub.clone());
        if !from.as_ref().is_some_and(|h| experiment.hubs.contains(h)) {
            return Err(format!(
                "{reference} resolved to {} from hub {}, which is not one of the experiment's hubs ({})",
                fetched.identity.label(),
                from.unwrap_or_else(|| "(none)".into()),
                experiment.hubs.join(", ")
            ));
        }
    }
    warnings.extend(fetched.warnings.iter().map(|w| format!("{reference}: {w}")));
    Ok(fetched)
}

/// A loaded component, shared by every step that names the same reference.
#[derive(Clone)]
enum Component {
    Fault(Arc<FaultPlugin>),
    Probe(Arc<ProbePlugin>),
}

impl Component {
    fn fault(self) -> Result<Arc<FaultPlugin>, String> {
        match self {
            Component::Fault(f) => Ok(f),
            Component::Probe(p) => Err(format!("{} is a probe, not a fault", p.label())),
        }
    }

    fn probe(self) -> Result<Arc<ProbePlugin>, String> {
        match self {
            Component::Probe(p) => Ok(p),
            Component::Fault(f) => Err(format!("{} is a fault, not a probe", f.label())),
        }
    }
}

/// Resolves and loads references, each once.
struct Loader<'a> {
    host: &'a Host,
    hub: Option<&'a Hub>,
    experiment: &'a Experiment,
    policy: &'a Policy,
    loaded: HashMap<String, Component>,
    warnings: Vec<String>,
    loads: Vec<ComponentLoad>,
}

impl Loader<'_> {
    async fn load(&mut self, reference: &str) -> Result<Component, String> {
        if let Some(c) = self.loaded.get(reference) {
            return Ok(c.clone());
        }
        let fetched = fetch(self.hub, self.experiment, reference, &mut self.warnings).await?;
        let start = Instant::now();
        let plugin = self
            .host
            .load(&fetched.bytes, &fetched.identity, self.policy)
            .await
            .map_err(|e| refusal(&fetched.identity, e))?;
        let seconds = start.elapsed().as_secs_f64();
        let component = match plugin {
            Plugin::Fault(f) => Component::Fault(Arc::new(f)),
            Plugin::Probe(p) => Component::Probe(Arc::new(p)),
        };
        self.loads.push(ComponentLoad {
            reference: reference.to_string(),
            kind: match component {
                Component::Fault(_) => "fault",
                Component::Probe(_) => "probe",
            },
            seconds,
        });
        self.loaded.insert(reference.to_string(), component.clone());
        Ok(component)
    }
}

fn refusal(identity: &Identity, e: LoadError) -> String {
    match e {
        LoadError::Host(e) => format!("{}: {e:#}", identity.label()),
        e => format!("{} refused: {e}", identity.label()),
    }
}

/// Checks one fault step: its targets (resolved now, each covered by a grant) and the
/// parameters of each run.
async fn plan_fault(
    host: &Host,
    plugin: &Arc<FaultPlugin>,
    step: &super::spec::Step,
    name: &str,
    lane: &str,
    reference: &str,
    problems: &mut Vec<String>,
) -> PlannedFault {
    let base = step.params.clone().unwrap_or_default();
    let mut planned = PlannedFault {
        name: name.to_string(),
        lane: lane.to_string(),
        reference: reference.to_string(),
        plugin: plugin.clone(),
        weight: step.weight.unwrap_or(10),
        duration: step.duration.map(|d| d.get()).unwrap_or_default(),
        targets: Vec::new(),
        skip: None,
    };
    let resolved: Vec<Resolved> = match &step.targets {
        None => Vec::new(),
        Some(targets) => {
            let schema = serde_json::from_str(&plugin.description.params_schema)
                .unwrap_or(serde_json::Value::Null);
            let accepts = Accepts::of_schema(&schema);
            let targets_owned = targets.clone();
            let found =
                tokio::task::spawn_blocking(move || target::resolve(&targets_owned, accepts))
                    .await
                    .unwrap_or_else(|e| Err(format!("resolving targets panicked: {e}")));
            match found {
                Err(e) => {
                    problems.push(format!("step {name}: {e}"));
                    return planned;
                }
                Ok(found) if found.is_empty() => {
                    if targets.on_empty == Some(OnEmpty::Skip) {
                        planned.skip =
                            Some("no target matched at the pre-run check (on_empty: skip)".into());
                    } else {
                        problems.push(format!(
                            "step {name}: no target matches now (say `on_empty: skip` to skip the step instead)"
                        ));
                    }
                    return planned;
                }
                Ok(found) => found,
            }
        }
    };
    let grants = plugin.grants.clone();
    type Run = (
        String,
        serde_json::Map<String, serde_json::Value>,
        Option<String>,
        Option<(u32, u64)>,
    );
    let runs: Vec<Run> = if resolved.is_empty() {
        vec![(
            "as its parameters say".to_string(),
            base.clone(),
            None,
            None,
        )]
    } else {
        let mut runs = Vec::new();
        for r in resolved {
            let mut params = base.clone();
            for (k, v) in &r.params {
                if params.contains_key(k) {
                    problems.push(format!(
                        "step {name}: parameter `{k}` is set by both `params` and `targets`"
                    ));
                }
                params.insert(k.clone(), v.clone());
            }
            let (grants, target) = (grants.clone(), r.clone());
            let covered =
                tokio::task::spawn_blocking(move || target::covering_grant(&grants, &target))
                    .await
                    .unwrap_or_else(|e| Err(format!("checking the grant panicked: {e}")));
            match covered {
                Ok(rule) => runs.push((r.label, params, Some(rule), r.process)),
                Err(e) => problems.push(format!("step {name}: {e}")),
            }
        }
        runs
    };
    for (label, params, grant, process) in runs {
        let value = serde_json::Value::Object(params);
        if let Err(e) = plugin.validate(host, &value.to_string()).await {
            problems.push(format!(
                "step {name}: parameters refused for target {label}: {e}"
            ));
        }
        planned.targets.push(PlannedTarget {
            label,
            params: value,
            grant,
            process,
        });
    }
    planned
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// A signal, a stop request or an emergency stop.
    Execution(StopReason),
    /// A stop-on-failure probe failed.
    ProbeFailed(String),
    /// The experiment's timeout.
    Timeout,
}

impl Stop {
    fn reason(&self) -> StopReason {
        match self {
            Stop::Execution(r) => *r,
            Stop::ProbeFailed(_) | Stop::Timeout => StopReason::UserStop,
        }
    }

    fn describe(&self) -> String {
        match self {
            Stop::Execution(r) => format!("stopped: {r}"),
            Stop::ProbeFailed(p) => format!("probe {p} failed and stops the run on failure"),
            Stop::Timeout => "the experiment ran past its timeout".into(),
        }
    }
}

/// A handle to stop a running experiment.
#[derive(Clone)]
pub struct Stopper(watch::Sender<Option<Stop>>);

impl From<watch::Sender<Option<Stop>>> for Stopper {
    fn from(tx: watch::Sender<Option<Stop>>) -> Stopper {
        Stopper(tx)
    }
}

impl Default for Stopper {
    fn default() -> Stopper {
        Stopper(watch::Sender::new(None))
    }
}

impl Stopper {
    /// Asks the run to stop; the first reason wins.
    pub fn stop(&self, why: Stop) {
        self.0.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(why);
                true
            } else {
                false
            }
        });
    }
}

/// Everything the tasks of one run share.
struct Shared {
    record: Mutex<Record>,
    /// The record as watchers see it: published by [`publish`] at most every
    /// [`PUBLISH_EVERY`] after a change, and once more when the run ends.
    live: watch::Sender<Record>,
    /// Told on every change of `record`.
    changed: tokio::sync::Notify,
    log: LogFan,
    stop: watch::Sender<Option<Stop>>,
    /// Faults injected right now (on-chaos probes run while it is above zero).
    chaos: watch::Sender<usize>,
    store: Option<Store>,
}

impl Shared {
    fn stopped(&self) -> Option<Stop> {
        self.stop.borrow().clone()
    }

    async fn until_stopped(&self) -> Stop {
        let mut rx = self.stop.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(s) => s.clone().unwrap_or(Stop::Execution(StopReason::Shutdown)),
            Err(_) => Stop::Execution(StopReason::Shutdown),
        }
    }

    /// Changes the record (watchers see it within [`PUBLISH_EVERY`]).
    fn with<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        let out = f(&mut lock(&self.record));
        self.changed.notify_one();
        out
    }

    /// Reads the record.
    fn read<R>(&self, f: impl FnOnce(&Record) -> R) -> R {
        f(&lock(&self.record))
    }

    /// Writes the record and pending log lines to the history (on the blocking pool).
    async fn persist(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let record = self.with(|r| r.clone());
        let lines = self.log.take_pending();
        let done = tokio::task::spawn_blocking(move || {
            store.save(&record)?;
            store.append_log(&record.id, &lines)
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot write the history: {e:#}"),
            Err(e) => tracing::warn!("writing the history panicked: {e}"),
        }
    }
}

/// A new run id: a ULID (sortable by time, unique).
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// The record a plan starts as: every fault pending, every probe unchecked.
fn initial_record(plan: &Plan, id: &str) -> Record {
    let owner = super::store::Owner::this_process();
    let faults = plan
        .faults
        .iter()
        .map(|f| FaultRecord {
            name: f.name.clone(),
            lane: f.lane.clone(),
            reference: f.reference.clone(),
            resolved: Some(f.plugin.label()),
            weight: f.weight,
            duration_ms: millis(f.duration),
            status: FaultStatus::Pending,
            message: None,
            targets: f
                .targets
                .iter()
                .map(|t| TargetRun {
                    target: t.label.clone(),
                    params: t.params.clone(),
                    execution: None,
                    grant: t.grant.clone(),
                    reason: None,
                    error: None,
                    injected_ms: None,
                    reverted_ms: None,
                    revert_ms: None,
                })
                .collect(),
            probe_success: None,
            started_ms: None,
            ended_ms: None,
        })
        .collect();
    let probes = plan
        .probes
        .iter()
        .map(|p| ProbeRecord {
            name: p.name.clone(),
            reference: p.reference.clone(),
            resolved: Some(p.plugin.label()),
            mode: p.mode,
            faults: p.faults.clone(),
            tally: Default::default(),
            checks: Vec::new(),
            success_rate: None,
            verdict: None,
        })
        .collect();
    let activities = plan
        .lanes
        .iter()
        .flat_map(|(lane, steps)| {
            steps.iter().map(move |s| {
                let (kind, name) = match s {
                    PlannedStep::Fault(i) => ("fault", plan.faults[*i].name.clone()),
                    PlannedStep::Wait(n, _) => ("wait", n.clone()),
                    PlannedStep::Probe(i) => ("probe", plan.probes[*i].name.clone()),
                };
                Activity {
                    kind: kind.into(),
                    name,
                    lane: lane.clone(),
                    started_ms: None,
                    ended_ms: None,
                    status: "pending".into(),
                    output: String::new(),
                }
            })
        })
        .collect();
    Record {
        id: id.to_string(),
        name: plan.experiment.name.clone(),
        description: plan.experiment.description.clone(),
        tags: plan.experiment.tags.clone(),
        team: plan.experiment.team.clone(),
        started_by: plan.started_by.clone(),
        file: plan.file.clone(),
        file_digest: plan.file_digest.clone(),
        status: Status::Running,
        end_state: None,
        reason: None,
        score: None,
        started_ms: now_ms(),
        ended_ms: None,
        owner_pid: owner.pid,
        owner_start: owner.start,
        boot_id: owner.boot_id,
        faults,
        probes,
        activities,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs a plan to its end and returns its record. `stopper` receives the handle that stops
/// it (signals, stop requests, emergency stops). The record is in `store` from the first
/// moment (status `running`) and at the end.
pub async fn run(plan: Plan, id: String, store: Option<Store>, stopper: Stopper) -> Record {
    run_live(plan, id, store, stopper).run().await
}

/// How often, at most, watchers of a [`LiveRun`] see its record change.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A run that can be watched while it goes: its record and its log. Nothing runs until
/// [`LiveRun::run`] is awaited.
pub struct LiveRun {
    plan: Plan,
    shared: Arc<Shared>,
}

/// [`run`], watched: the run's record (status `running`, every fault pending) is there at
/// once, and changes as the run goes (at most every [`PUBLISH_EVERY`]; its last value is the
/// final record).
pub fn run_live(plan: Plan, id: String, store: Option<Store>, stopper: Stopper) -> LiveRun {
    let record = initial_record(&plan, &id);
    let shared = Arc::new(Shared {
        live: watch::Sender::new(record.clone()),
        record: Mutex::new(record),
        changed: tokio::sync::Notify::new(),
        log: plan.log.clone(),
        stop: stopper.0.clone(),
        chaos: watch::Sender::new(0),
        store,
    });
    LiveRun { plan, shared }
}

impl LiveRun {
    /// The record as it is now; changes as the run goes.
    pub fn record(&self) -> watch::Receiver<Record> {
        self.shared.live.subscribe()
    }

    /// The run's log: live lines and the lines kept.
    pub fn log(&self) -> LogHandle {
        LogHandle(self.shared.log.clone())
    }

    /// Runs the plan to its end and returns its record (see [`run`]).
    pub async fn run(self) -> Record {
        let LiveRun { plan, shared } = self;
        run_shared(plan, shared).await
    }
}

/// Publishes the record to watchers after each change, at most every [`PUBLISH_EVERY`],
/// until `done`.
async fn publish(shared: Arc<Shared>, mut done: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = done.wait_for(|d| *d) => return,
        }
        let now = shared.read(Record::clone);
        shared.live.send_replace(now);
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
            _ = done.wait_for(|d| *d) => return,
        }
    }
}

async fn run_shared(plan: Plan, shared: Arc<Shared>) -> Record {
    let id = shared.read(|r| r.id.clone());
    let (published, publish_done) = watch::channel(false);
    let publisher = tokio::spawn(publish(shared.clone(), publish_done));
    let plan = Arc::new(plan);
    shared.log.engine(
        "info",
        None,
        format!(
            "experiment {} ({}): {} lane(s), {} fault step(s), {} probe(s); planned {}, timeout {}",
            plan.experiment.name,
            id,
            plan.lanes.len(),
            plan.faults.len(),
            plan.probes.len(),
            humantime::format_duration(plan.planned()),
            humantime::format_duration(plan.timeout)
        ),
    );
    shared.persist().await;
    // Flushes the log to the history every second while the run goes on. Told to stop and
    // awaited, never aborted: a save in flight must not land after the final one.
    let (flushing, mut flush_done) = watch::channel(false);
    let flusher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => shared.persist().await,
                    _ = flush_done.changed() => return,
                }
            }
        })
    };
    let timeout = {
        let (shared, limit) = (shared.clone(), plan.timeout);
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            Stopper(shared.stop.clone()).stop(Stop::Timeout);
        })
    };
    let estop = {
        let (shared, dir) = (shared.clone(), plan.host.config().state_dir.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(reason) = crate::estop::active(&dir).await {
                    shared
                        .log
                        .engine("error", None, format!("emergency stop: {reason}"));
                    Stopper(shared.stop.clone()).stop(Stop::Execution(StopReason::EmergencyStop));
                    return;
                }
            }
        })
    };

    // Before: start-of-test and the first half of edge probes.
    let before: Vec<usize> = plan
        .probes
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.mode, Some(ProbeMode::StartOfTest | ProbeMode::Edge)))
        .map(|(i, _)| i)
        .collect();
    point_checks(&plan, &shared, &before, Moment::Before).await;

    // During: the lanes, with continuous and on-chaos probes beside them.
    let (lanes_done, _) = watch::channel(false);
    let mut watchers = Vec::new();
    for (i, p) in plan.probes.iter().enumerate() {
        if matches!(p.mode, Some(ProbeMode::Continuous | ProbeMode::OnChaos)) {
            let (plan, shared, done) = (plan.clone(), shared.clone(), lanes_done.subscribe());
            watchers.push(tokio::spawn(async move {
                repeated_checks(&plan, &shared, i, done).await;
            }));
        }
    }
    if shared.stopped().is_none() {
        let mut lanes = Vec::new();
        for lane in 0..plan.lanes.len() {
            let (plan, shared) = (plan.clone(), shared.clone());
            lanes.push(tokio::spawn(
                async move { run_lane(&plan, &shared, lane).await },
            ));
        }
        for l in lanes {
            if let Err(e) = l.await {
                shared
                    .log
                    .engine("error", None, format!("a lane's task failed: {e}"));
            }
        }
    }
    let _ = lanes_done.send(true);
    for w in watchers {
        let _ = w.await;
    }

    // After: end-of-test and the second half of edge probes, unless the run was stopped.
    let after: Vec<usize> = plan
        .probes
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.mode, Some(ProbeMode::EndOfTest | ProbeMode::Edge)))
        .map(|(i, _)| i)
        .collect();
    if shared.stopped().is_none() {
        point_checks(&plan, &shared, &after, Moment::After).await;
    } else if !after.is_empty() {
        shared.log.engine(
            "warn",
            None,
            "the run was stopped: the probes after it are skipped".into(),
        );
    }
    timeout.abort();
    estop.abort();
    let _ = flushing.send(true);
    let _ = flusher.await;
    let stop = shared.stopped();
    let record = shared.with(|r| {
        conclude(r, &plan, stop.as_ref());
        r.clone()
    });
    let _ = published.send(true);
    let _ = publisher.await;
    // After the publisher ended: the final record is the last value watchers see.
    shared.live.send_replace(record.clone());
    shared.log.say(
        Source::Engine,
        if record.end_state == Some(EndState::Completed) {
            "info"
        } else {
            "warn"
        },
        None,
        format!(
            "experiment {}: {} ({}), score {}{}",
            record.name,
            record.status.as_str(),
            record.end_state.map_or("-", EndState::as_str),
            record
                .score
                .map_or_else(|| "-".into(), |s| format!("{s:.1}")),
            record
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    );
    shared.persist().await;
    record
}

/// The log lines a run keeps in memory, for its reports once it has ended.
#[derive(Clone)]
pub struct LogHandle(LogFan);

impl LogHandle {
    /// The handle on `plan`'s log.
    pub fn of(plan: &Plan) -> LogHandle {
        LogHandle(plan.log.clone())
    }

    /// The lines kept (the first 20,000, then a line counting the rest).
    pub fn kept(&self) -> Vec<LogEntry> {
        self.0.kept()
    }

    /// A live feed of the log, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEntry> {
        self.0.live.subscribe()
    }
}

/// Statuses, verdicts and the score, once everything has ended.
fn conclude(r: &mut Record, plan: &Plan, stop: Option<&Stop>) {
    for p in &mut r.probes {
        let spec = plan.probes.iter().find(|s| s.name == p.name);
        let repeated = matches!(p.mode, Some(ProbeMode::Continuous | ProbeMode::OnChaos));
        let (verdict, rate) =
            probe_verdict(&p.tally, repeated, spec.map_or(100.0, |s| s.success_rate));
        p.verdict = verdict;
        p.success_rate = rate;
    }
    let probes = r.probes.clone();
    for f in &mut r.faults {
        if f.status == FaultStatus::Pending {
            f.status = FaultStatus::Skipped;
            if f.message.is_none() {
                f.message = Some(match stop {
                    Some(s) => format!("never ran: {}", s.describe()),
                    None => "never ran".into(),
                });
            }
        }
        let judged: Vec<Verdict> = probes
            .iter()
            .filter(|p| p.faults.contains(&f.name))
            .filter_map(|p| p.verdict)
            .collect();
        // A fault that never took effect (skipped, or no target injected) says nothing of
        // the system: it is left out of the score.
        let took_effect = f.targets.iter().any(|t| t.injected_ms.is_some());
        if !judged.is_empty() && took_effect {
            let passed = judged.iter().filter(|v| **v == Verdict::Passed).count();
            f.probe_success = Some(passed as f64 * 100.0 / judged.len() as f64);
        }
        if f.status == FaultStatus::Completed {
            // Ran to its end: the probes judge it.
            f.status = FaultStatus::judge(&judged);
            if judged.is_empty() {
                f.message = Some("no probe judged it".into());
            }
        }
    }
    for a in &mut r.activities {
        if a.status == "pending" {
            a.status = "skipped".into();
        }
    }
    let statuses: Vec<FaultStatus> = r
        .faults
        .iter()
        .map(|f| f.status)
        .filter(|s| *s != FaultStatus::Skipped)
        .collect();
    let verdicts: Vec<Verdict> = r.probes.iter().filter_map(|p| p.verdict).collect();
    r.status = match stop {
        Some(Stop::Timeout) => Status::Timeout,
        Some(_) => Status::Stopped,
        None => Status::of(&statuses, &verdicts),
    };
    r.end_state = EndState::of(r.status, matches!(stop, Some(Stop::ProbeFailed(_))));
    r.reason = match stop {
        Some(s) => Some(s.describe()),
        None => match r.status {
            Status::Completed => None,
            _ => Some(explain(r)),
        },
    };
    r.score = Record::score_of(&r.faults);
    r.ended_ms = Some(now_ms());
}

/// Why a run that was not stopped did not complete, for people.
fn explain(r: &Record) -> String {
    let mut why = Vec::new();
    for f in &r.faults {
        if matches!(
            f.status,
            FaultStatus::Error | FaultStatus::CompletedWithError
        ) {
            why.push(format!(
                "fault {} {}{}",
                f.name,
                f.status.as_str(),
                f.message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ));
        }
    }
    for p in &r.probes {
        if let Some(v @ (Verdict::Failed | Verdict::NotApplicable)) = p.verdict {
            why.push(format!("probe {} {v}", p.name));
        }
    }
    if why.is_empty() {
        "no fault and no probe ran".into()
    } else {
        why.join("; ")
    }
}

/// A probe's verdict over its checks: not applicable when any check could not run; for
/// repeated probes passed when the share of passed checks reaches `threshold`; for the others
/// failed when any check failed. `None` when it never checked.
fn probe_verdict(tally: &Tally, repeated: bool, threshold: f64) -> (Option<Verdict>, Option<f64>) {
    let total = tally.total();
    if total == 0 {
        return (None, None);
    }
    let rate = tally.passed as f64 * 100.0 / total as f64;
    let verdict = if tally.not_applicable > 0 {
        Verdict::NotApplicable
    } else if repeated {
        if rate + 1e-9 >= threshold {
            Verdict::Passed
        } else {
            Verdict::Failed
        }
    } else if tally.passed == total {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    (Some(verdict), repeated.then_some(rate))
}

/// Checks probes `which` once each, in parallel, at `moment`.
async fn point_checks(plan: &Arc<Plan>, shared: &Arc<Shared>, which: &[usize], moment: Moment) {
    let mut tasks = Vec::new();
    for &i in which {
        let (plan, shared) = (plan.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let p = &plan.probes[i];
            if !p.initial_delay.is_zero() && moment == Moment::Before {
                tokio::select! {
                    _ = tokio::time::sleep(p.initial_delay) => {}
                    _ = shared.until_stopped() => return,
                }
            }
            check_once(&plan, &shared, i, moment).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Continuous and on-chaos probes: a check every interval until the lanes are done (or the run
/// is stopped); on-chaos only while a fault is injected.
async fn repeated_checks(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    i: usize,
    mut done: watch::Receiver<bool>,
) {
    let p = &plan.probes[i];
    let on_chaos = p.mode == Some(ProbeMode::OnChaos);
    let mut chaos = shared.chaos.subscribe();
    if !p.initial_delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(p.initial_delay) => {}
            _ = done.wait_for(|d| *d) => return,
        }
    }
    loop {
        if *done.borrow() || shared.stopped().is_some() {
            return;
        }
        if on_chaos && *chaos.borrow() == 0 {
            tokio::select! {
                _ = chaos.wait_for(|n| *n > 0) => continue,
                _ = done.wait_for(|d| *d) => return,
            }
        }
        let start = Instant::now();
        check_once(plan, shared, i, Moment::During).await;
        let next = p.interval.saturating_sub(start.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = done.wait_for(|d| *d) => return,
        }
    }
}

/// One check of probe `i`: up to `attempts` attempts, each within its timeout, `interval`
/// apart; stops the run when it fails and the probe says so.
async fn check_once(plan: &Plan, shared: &Shared, i: usize, moment: Moment) -> Verdict {
    let p = &plan.probes[i];
    let at_ms = now_ms();
    let start = Instant::now();
    let execution = format!("{}.probe.{i}", shared.read(|r| r.id.clone()));
    shared.log.name_execution(&execution, &p.name);
    let mut attempt = 0;
    let checked = loop {
        attempt += 1;
        let checked = match tokio::time::timeout(
            p.timeout,
            p.plugin.judge(&plan.host, &execution, &p.params),
        )
        .await
        {
            Ok(c) => c,
            Err(_) => crate::host::Checked {
                verdict: Verdict::Failed,
                message: format!(
                    "no answer within the probe's timeout of {}",
                    humantime::format_duration(p.timeout)
                ),
                value: None,
                elapsed_ms: p.timeout.as_secs_f64() * 1000.0,
                not_run: None,
            },
        };
        if checked.verdict == Verdict::Passed || attempt >= p.attempts {
            break checked;
        }
        // A stop ends a check between attempts: it keeps the last attempt's result.
        tokio::select! {
            _ = tokio::time::sleep(p.interval) => {}
            _ = shared.until_stopped() => break checked,
        }
    };
    let check = Check {
        at_ms,
        moment,
        verdict: checked.verdict,
        message: checked.message.clone(),
        value: checked.value,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
        attempts: attempt,
    };
    shared.log.say(
        Source::Probe,
        match checked.verdict {
            Verdict::Passed => "info",
            _ => "warn",
        },
        Some(&p.name),
        format!(
            "{} {} ({} attempt{}, {:.1} ms): {}",
            p.name,
            checked.verdict,
            attempt,
            if attempt == 1 { "" } else { "s" },
            check.elapsed_ms,
            checked.message
        ),
    );
    shared.with(|r| {
        if let Some(rec) = r.probes.get_mut(i) {
            rec.record(check);
        }
    });
    // Only a failure of the system stops the run; a probe that could not run is an error of
    // the experiment, judged at the end (not applicable), not a verdict on the system.
    if p.stop_on_failure && checked.verdict == Verdict::Failed {
        Stopper(shared.stop.clone()).stop(Stop::ProbeFailed(p.name.clone()));
    }
    checked.verdict
}

/// Runs one lane's steps in order until they end or the run is stopped.
async fn run_lane(plan: &Arc<Plan>, shared: &Arc<Shared>, lane: usize) {
    let (lane_name, steps) = &plan.lanes[lane];
    let first_activity: usize = plan.lanes[..lane].iter().map(|(_, s)| s.len()).sum();
    for (j, step) in steps.iter().enumerate() {
        if shared.stopped().is_some() {
            return;
        }
        let activity = first_activity + j;
        shared.with(|r| {
            if let Some(a) = r.activities.get_mut(activity) {
                a.started_ms = Some(now_ms());
                a.status = "running".into();
            }
        });
        let (status, output) = match step {
            PlannedStep::Wait(name, d) => {
                shared.log.engine(
                    "info",
                    Some(name),
                    format!("{lane_name}: waiting {}", humantime::format_duration(*d)),
                );
                tokio::select! {
                    _ = tokio::time::sleep(*d) => ("completed".to_string(), String::new()),
                    s = shared.until_stopped() => ("stopped".to_string(), s.describe()),
                }
            }
            PlannedStep::Probe(i) => {
                let v = check_once(plan, shared, *i, Moment::During).await;
                (
                    v.as_str().to_string(),
                    shared.read(|r| {
                        r.probes
                            .get(*i)
                            .and_then(|p| p.checks.last())
                            .map(|c| c.message.clone())
                            .unwrap_or_default()
                    }),
                )
            }
            PlannedStep::Fault(i) => run_fault(plan, shared, *i).await,
        };
        shared.with(|r| {
            if let Some(a) = r.activities.get_mut(activity) {
                a.ended_ms = Some(now_ms());
                a.status = status;
                a.output = output;
            }
        });
    }
}

/// Runs fault step `i` on each of its targets at once, held for its duration; returns its
/// activity's status and output.
async fn run_fault(plan: &Arc<Plan>, shared: &Arc<Shared>, i: usize) -> (String, String) {
    let f = &plan.faults[i];
    if let Some(why) = &f.skip {
        shared
            .log
            .engine("warn", Some(&f.name), format!("skipped: {why}"));
        shared.with(|r| {
            r.faults[i].status = FaultStatus::Skipped;
            r.faults[i].message = Some(why.clone());
        });
        return ("skipped".into(), why.clone());
    }
    let id = shared.with(|r| {
        r.faults[i].status = FaultStatus::Running;
        r.faults[i].started_ms = Some(now_ms());
        r.id.clone()
    });
    shared.log.engine(
        "info",
        Some(&f.name),
        format!(
            "injecting {} on {} target(s) for {}",
            f.plugin.label(),
            f.targets.len(),
            humantime::format_duration(f.duration)
        ),
    );
    let mut runs = Vec::new();
    let mut gone = Vec::new();
    for (k, t) in f.targets.iter().enumerate() {
        if let Some((pid, start)) = t.process {
            let now = tokio::task::spawn_blocking(move || {
                crate::capability::process::linux::info(pid).map(|p| p.start_time)
            })
            .await
            .ok()
            .flatten();
            if now != Some(start) {
                let why = format!(
                    "pid {pid} is no longer the process the pre-run check resolved (it exited or its pid was reused): not injected"
                );
                shared.log.engine("error", Some(&f.name), why.clone());
                shared.with(|r| r.faults[i].targets[k].error = Some(why.clone()));
                gone.push(why);
                continue;
            }
        }
        let spec = Spec {
            id: format!("{id}.{i}.{k}"),
            params: t.params.to_string(),
            duration: f.duration,
            lease: None,
        };
        shared.log.name_execution(&spec.id, &f.name);
        shared.with(|r| r.faults[i].targets[k].execution = Some(spec.id.clone()));
        let execution = Execution::new(plan.host.clone(), f.plugin.clone(), spec);
        let handle = execution.handle();
        let events = handle.subscribe();
        // A task of its own: should it panic, its guard still reverts.
        let task = tokio::spawn(execution.run());
        runs.push((k, handle, task, events));
    }
    let mut tasks = Vec::new();
    for (k, handle, task, events) in runs {
        let (shared, name) = (shared.clone(), f.name.clone());
        tasks.push(tokio::spawn(async move {
            follow(&shared, i, k, &name, handle, task, events).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => outcomes.push(Err(format!("the task following a target failed: {e}"))),
        }
    }
    let stop = shared.stopped();
    let problems: Vec<String> = gone
        .into_iter()
        .chain(outcomes.iter().filter_map(|o| match o {
            Ok(o) => problem_of(o),
            Err(e) => Some(e.clone()),
        }))
        .collect();
    // Cut short during inject or while held: either way it did not run its course.
    let stopped_early = outcomes.iter().any(|o| {
        o.as_ref()
            .is_ok_and(|o| o.reason != StopReason::DurationOver)
    });
    let status = if !problems.is_empty() {
        FaultStatus::Error
    } else if stop.is_some() && stopped_early {
        FaultStatus::Stopped
    } else {
        // Ran to its end: `conclude` judges it by its probes.
        FaultStatus::Completed
    };
    shared.with(|r| {
        let rec = &mut r.faults[i];
        rec.status = status;
        rec.ended_ms = Some(now_ms());
        if !problems.is_empty() {
            rec.message = Some(problems.join("; "));
        } else if status == FaultStatus::Stopped {
            rec.message = stop.as_ref().map(Stop::describe);
        }
    });
    let output = if problems.is_empty() {
        format!("{} target(s) injected and reverted", f.targets.len())
    } else {
        problems.join("; ")
    };
    shared.log.engine(
        if problems.is_empty() { "info" } else { "error" },
        Some(&f.name),
        format!("{}: {output}", f.name),
    );
    let word = match status {
        FaultStatus::Error => "error",
        FaultStatus::Stopped => "stopped",
        _ => "completed",
    };
    (word.into(), output)
}

/// What went wrong in a target's run, if anything did.
fn problem_of(o: &Outcome) -> Option<String> {
    if !o.is_clean() {
        return Some(format!(
            "{}, the journal keeps it for `faultline recover`: {}",
            super::record::REVERT_FAILED,
            o.revert_failures.join("; ")
        ));
    }
    if let Some(e) = &o.inject_error {
        return Some(format!("inject failed: {e}"));
    }
    if let Some(e) = &o.tick_error {
        return Some(format!("a tick failed: {e}"));
    }
    if o.reason == StopReason::Abandoned {
        return Some(o.reason.to_string());
    }
    None
}

/// Follows one target's execution: forwards its host events to the log, counts it in the
/// chaos gauge while injected, stops it when the run stops, records its outcome.
async fn follow(
    shared: &Arc<Shared>,
    i: usize,
    k: usize,
    name: &str,
    handle: Handle,
    task: tokio::task::JoinHandle<Arc<Outcome>>,
    mut events: broadcast::Receiver<crate::execution::Event>,
) -> Result<Arc<Outcome>, String> {
    let finished = handle.finished();
    tokio::pin!(finished);
    let stop = shared.until_stopped();
    tokio::pin!(stop);
    let mut stopping = false;
    let mut counted = false;
    let outcome = loop {
        tokio::select! {
            o = &mut finished => break o,
            s = &mut stop, if !stopping => {
                stopping = true;
                handle.stop(s.reason());
            }
            e = events.recv() => match e {
                Ok(event) => match event.kind {
                    EventKind::Host { level, message } => {
                        shared.log.say(Source::Host, level, Some(name), message);
                    }
                    EventKind::Phase { phase: crate::execution::Phase::Injected } => {
                        counted = true;
                        shared.chaos.send_modify(|n| *n += 1);
                        shared.with(|r| r.faults[i].targets[k].injected_ms = Some(event.at_ms));
                    }
                    EventKind::Phase { phase: crate::execution::Phase::Reverting } if counted => {
                        counted = false;
                        shared.chaos.send_modify(|n| *n = n.saturating_sub(1));
                    }
                    // Guest lines come through the host's sink, named by execution.
                    _ => {}
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    shared.log.engine("warn", Some(name), format!("{n} host events not shown"));
                }
                Err(broadcast::error::RecvError::Closed) => {}
            },
        }
    };
    if counted {
        shared.chaos.send_modify(|n| *n = n.saturating_sub(1));
    }
    let _ = task.await;
    shared.with(|r| {
        let t = &mut r.faults[i].targets[k];
        t.reason = Some(outcome.reason.to_string());
        t.error = problem_of(&outcome);
        t.reverted_ms = Some(outcome.ended_ms);
        if outcome.injected || outcome.changes > 0 {
            t.revert_ms = Some(outcome.revert_ms);
        }
        if t.injected_ms.is_none() && outcome.injected {
            t.injected_ms = outcome.inject_ms.map(|ms| outcome.started_ms + ms as u64);
        }
    });
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_verdict_follows_its_checks_and_threshold() {
        use Verdict::*;
        // (checks, repeated, threshold) → (verdict, success rate)
        type Case<'a> = (&'a [Verdict], bool, f64, Option<Verdict>, Option<f64>);
        let cases: &[Case] = &[
            (&[], false, 100.0, None, None),
            (&[Passed], false, 100.0, Some(Passed), None),
            (&[Passed, Failed], false, 100.0, Some(Failed), None),
            (
                &[Passed, NotApplicable],
                false,
                100.0,
                Some(NotApplicable),
                None,
            ),
            (
                &[Failed, NotApplicable],
                false,
                100.0,
                Some(NotApplicable),
                None,
            ),
            (
                &[Passed, Passed, Passed, Failed],
                true,
                75.0,
                Some(Passed),
                Some(75.0),
            ),
            (
                &[Passed, Passed, Failed, Failed],
                true,
                75.0,
                Some(Failed),
                Some(50.0),
            ),
            (
                &[Passed, Passed, Passed],
                true,
                100.0,
                Some(Passed),
                Some(100.0),
            ),
            (
                &[Passed, Passed, NotApplicable],
                true,
                10.0,
                Some(NotApplicable),
                Some(200.0 / 3.0),
            ),
        ];
        for (checks, repeated, threshold, verdict, rate) in cases {
            let mut tally = Tally::default();
            checks.iter().for_each(|v| tally.add(*v));
            assert_eq!(
                probe_verdict(&tally, *repeated, *threshold),
                (*verdict, *rate),
                "{checks:?} repeated={repeated} threshold={threshold}"
            );
        }
    }
}
