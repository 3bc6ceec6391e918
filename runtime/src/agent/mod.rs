//! The agent: a daemon that runs faults on request and always reverts them.
//!
//! On start it recovers what dead runs left in the journal *before* it accepts any work (see
//! [`crate::host::recover`]). Then [`App::start`] bundles what the API serves — single-fault
//! runs ([`Agent`]), experiments ([`experiments::Experiments`]), metrics, the hubs kept in sync
//! ([`hubsync::Hubs`]) and the tokens — and [`api::router`] serves it ([`server`] listens).
//!
//! Runs name components by hub reference only, and each is an
//! [`crate::execution::Execution`]: the agent keeps no lifecycle of its own. Every run is
//! reverted when its duration ends, when it is stopped, when its lease lapses (no heartbeat in
//! time), on an emergency stop, and when the agent shuts down. An emergency stop also refuses
//! new runs and experiments until it is cleared.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod experiments;
pub mod guard;
pub mod hubsync;
pub mod metrics;
pub mod run;
pub mod server;
pub mod view;

use crate::component::Source;
use crate::execution::{Execution, Spec, StopReason, new_id};
use crate::host::{FaultPlugin, Host, LoadError};
use crate::policy::{Identity, Policy};
use anyhow::Context as _;
use auth::Tokens;
use config::AgentConfig;
use experiments::Experiments;
use hubsync::Hubs;
use metrics::Metrics;
use run::{Run, RunView};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The shortest lease: anything shorter would lapse on an ordinary scheduling hiccup.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// Finished runs kept for `GET /v1/runs`; older finished runs are dropped first.
pub const MAX_FINISHED: usize = 256;
/// Runs in flight at once; more are refused (503) rather than queued without bound.
pub const MAX_ACTIVE: usize = 1024;

/// What a caller asks for when starting a run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// A hub reference (`name`, `name@^1`, `sha256:<hex>`); never a path.
    pub component: String,
    /// Parameters as a JSON object.
    pub params: serde_json::Value,
    /// How long to hold the fault.
    pub duration: Duration,
    /// Revert unless a heartbeat comes within this long of the last one.
    pub lease: Option<Duration>,
    /// The team that owns the run (the starting token's): only it (or an admin) reads,
    /// renews or stops it.
    pub team: String,
    /// The starting token's name.
    pub started_by: String,
}

/// Why a run was not started; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An emergency stop (or a shutdown) is active.
    #[error("new runs are refused: {0}")]
    Refused(String),
    /// Too many runs in flight.
    #[error("{0}")]
    Busy(String),
    /// The request is malformed or names something unusable.
    #[error("{0}")]
    Invalid(String),
    /// The component breaks the contract or the policy.
    #[error("{0}")]
    ComponentRefused(String),
    /// The agent failed.
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

/// What an emergency stop (or a shutdown) did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StopAll {
    /// Runs that were cut short.
    pub stopped: usize,
    /// From the call to everything reverted, in milliseconds.
    pub reverted_in_ms: f64,
    /// Changes that could not be undone, with what to run by hand; empty when clean.
    pub failures: Vec<String>,
}

#[derive(Default)]
struct State {
    /// Why new runs are refused, when they are.
    refusing: Option<String>,
    runs: BTreeMap<String, Run>,
}

impl State {
    /// Drops the oldest finished runs beyond [`MAX_FINISHED`]; ids sort by start time.
    fn prune(&mut self) {
        let finished: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| r.is_final())
            .map(|(id, _)| id.clone())
            .collect();
        let excess = finished.len().saturating_sub(MAX_FINISHED);
        for id in finished.into_iter().take(excess) {
            self.runs.remove(&id);
        }
    }
}

/// The agent's single-fault runs: a host, the operator's policy, the hubs and the runs.
pub struct Agent {
    host: Arc<Host>,
    policy: Policy,
    hubs: Arc<Hubs>,
    metrics: Arc<Metrics>,
    plugins: Mutex<HashMap<Identity, Arc<FaultPlugin>>>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere mid-update must not stop reverts.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// An agent over `host` (whose recovery has already run) with `policy`, resolving
    /// components in the current index of `hubs`; every ended run goes to `metrics`.
    pub fn new(host: Host, policy: Policy, hubs: Arc<Hubs>, metrics: Arc<Metrics>) -> Agent {
        Agent {
            host: Arc::new(host),
            policy,
            hubs,
            metrics,
            plugins: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
        }
    }

    /// The host.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Why new runs are refused, if they are.
    pub fn refusing(&self) -> Option<String> {
        lock(&self.state).refusing.clone()
    }

    /// Resolves a hub reference and loads its fault once per identity; later runs reuse the
    /// checked plug-in.
    async fn plugin(&self, reference: &str) -> Result<Arc<FaultPlugin>, StartError> {
        let source = Source::from_request(reference).map_err(StartError::Invalid)?;
        let hub = self.hubs.current();
        // Resolving is in memory: a reference already loaded costs no read and no hash.
        if let (Source::Hub(reference), Some(hub)) = (&source, &hub)
            && let Ok(resolved) = hub.resolve(reference)
        {
            let identity = Identity::from_hub(
                &resolved.hub,
                &resolved.package.name,
                resolved.release.version.clone(),
                &resolved.release.digest.to_string(),
            );
            if let Some(p) = lock(&self.plugins).get(&identity) {
                return Ok(p.clone());
            }
        }
        let fetched = source
            .fetch(hub.as_deref())
            .await
            .map_err(|e| StartError::Invalid(format!("{e:#}")))?;
        let plugin = match self
            .host
            .load_fault(&fetched.bytes, &fetched.identity, &self.policy)
            .await
        {
            Ok(p) => Arc::new(p),
            Err(LoadError::Host(e)) => return Err(StartError::Host(e)),
            Err(e) => return Err(StartError::ComponentRefused(e.to_string())),
        };
        lock(&self.plugins).insert(fetched.identity, plugin.clone());
        Ok(plugin)
    }

    /// Starts a run; returns its id once its task is under way.
    pub async fn start(self: &Arc<Self>, req: RunRequest) -> Result<String, StartError> {
        if let Some(why) = self.refusing() {
            return Err(StartError::Refused(why));
        }
        // The host-wide emergency stop (`faultline emergency-stop`) holds for the agent too.
        if let Some(why) = crate::estop::active(&self.host.config().state_dir).await {
            return Err(StartError::Refused(format!("emergency stop: {why}")));
        }
        if let Some(lease) = req.lease
            && lease < MIN_LEASE
        {
            return Err(StartError::Invalid(format!(
                "lease {} is shorter than the minimum of 1s",
                humantime::format_duration(lease)
            )));
        }
        if req.duration.is_zero() {
            return Err(StartError::Invalid("duration must be more than 0s".into()));
        }
        if !req.params.is_object() {
            return Err(StartError::Invalid("params must be a JSON object".into()));
        }
        let plugin = self.plugin(&req.component).await?;
        let params = req.params.to_string();
        plugin
            .validate(&self.host, &params)
            .await
            .map_err(|e| StartError::Invalid(format!("parameters refused: {e}")))?;
        let spec = Spec {
            id: new_id(),
            params,
            duration: req.duration,
            lease: req.lease,
        };
        let id = spec.id.clone();
        let execution = Execution::new(self.host.clone(), plugin, spec);
        let run = Run {
            handle: execution.handle(),
            component: req.component.clone(),
            team: req.team.clone(),
            started_by: req.started_by.clone(),
        };
        // Checked again under the lock that an emergency stop takes: a run is either refused
        // here or in the set the emergency stop reverts, never neither.
        let mut state = lock(&self.state);
        if let Some(why) = &state.refusing {
            return Err(StartError::Refused(why.clone()));
        }
        let active = state.runs.values().filter(|r| !r.is_final()).count();
        if active >= MAX_ACTIVE {
            return Err(StartError::Busy(format!(
                "{active} runs are in flight, the most this agent holds at once"
            )));
        }
        state.prune();
        state.runs.insert(id.clone(), run.clone());
        // A task of its own: should it panic, the execution's guard still reverts the run and
        // publishes its outcome, so stops and shutdown never wait forever.
        tokio::spawn(execution.run());
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            run.handle.finished().await;
            metrics.run_ended(&run.view());
        });
        Ok(id)
    }

    /// One run.
    pub fn run(&self, id: &str) -> Option<Run> {
        lock(&self.state).runs.get(id).cloned()
    }

    /// Every run the agent still holds, oldest first.
    pub fn runs(&self) -> Vec<RunView> {
        let runs: Vec<Run> = lock(&self.state).runs.values().cloned().collect();
        runs.iter().map(Run::view).collect()
    }

    /// Emergency stop: refuses new runs with `reason`, reverts every run at once and waits
    /// until all are reverted. New runs stay refused until [`Agent::clear_emergency_stop`].
    pub async fn emergency_stop(&self, reason: &str) -> StopAll {
        // The marker too: every `faultline run` on this host stops and new ones are refused.
        let (dir, why) = (self.host.config().state_dir.clone(), reason.to_string());
        match tokio::task::spawn_blocking(move || crate::estop::set(&dir, &why)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot set the emergency-stop marker: {e:#}"),
            Err(e) => tracing::warn!("setting the emergency-stop marker panicked: {e}"),
        }
        self.stop_all(
            format!("emergency stop: {reason}"),
            StopReason::EmergencyStop,
        )
        .await
    }

    /// Clears an emergency stop (the agent's and the host-wide marker); returns whether one
    /// was active.
    pub async fn clear_emergency_stop(&self) -> bool {
        let dir = self.host.config().state_dir.clone();
        let marker = match tokio::task::spawn_blocking(move || crate::estop::clear(&dir)).await {
            Ok(Ok(was)) => was,
            Ok(Err(e)) => {
                tracing::warn!("cannot clear the emergency-stop marker: {e:#}");
                false
            }
            Err(e) => {
                tracing::warn!("clearing the emergency-stop marker panicked: {e}");
                false
            }
        };
        let mut state = lock(&self.state);
        let was = state.refusing.is_some();
        state.refusing = None;
        was || marker
    }

    /// Shutdown: like an emergency stop, for good.
    pub async fn shutdown(&self) -> StopAll {
        self.stop_all("the agent is shutting down".into(), StopReason::Shutdown)
            .await
    }

    async fn stop_all(&self, refusing: String, reason: StopReason) -> StopAll {
        let start = Instant::now();
        let runs: Vec<Run> = {
            let mut state = lock(&self.state);
            state.refusing = Some(refusing);
            state.runs.values().cloned().collect()
        };
        let mut stopped = 0;
        for run in &runs {
            if !run.is_final() && run.handle.stop(reason) {
                stopped += 1;
            }
        }
        for run in &runs {
            run.handle.finished().await;
        }
        // Then whatever the journal still holds is retried: a run's failed undo, or a change
        // adopted from an earlier crash. Its failures are the truth about the host.
        let failures = self.host.undo_everything().await;
        StopAll {
            stopped,
            reverted_in_ms: start.elapsed().as_secs_f64() * 1000.0,
            failures,
        }
    }
}

/// What `POST /v1/emergency-stop` did: the single-fault runs and the experiments it stopped.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EmergencyStopped {
    /// The single-fault runs.
    pub runs: StopAll,
    /// The experiments: how many were stopped, and any whose revert failed.
    pub experiments: crate::agent::experiments::Stopped,
}

/// Everything the API serves, cheap to clone (every part is shared).
#[derive(Clone)]
pub struct App {
    /// Single-fault runs (`/v1/runs`).
    pub agent: Arc<Agent>,
    /// Experiments (`/v1/experiments`).
    pub experiments: Arc<Experiments>,
    /// The Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The hubs, kept in sync.
    pub hubs: Arc<Hubs>,
    /// The tokens the API accepts.
    pub tokens: Arc<Tokens>,
    /// Labels fleets select this agent by.
    pub labels: Arc<BTreeMap<String, String>>,
    shutting_down: Arc<AtomicBool>,
    sync_task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl App {
    /// Builds the app from `config` once recovery has run on `host`: opens the hubs (a first
    /// sync), the experiment history and the managers, and starts the periodic hub sync.
    /// Returns the app and the warnings to show (hub sources that failed, and the like); an
    /// error only when the history cannot be opened.
    pub async fn start(
        config: &AgentConfig,
        host: Host,
        policy: Policy,
        tokens: Tokens,
    ) -> anyhow::Result<(App, Vec<String>)> {
        let metrics = Arc::new(Metrics::new());
        let (hubs, mut warnings) = Hubs::open(config.hub.clone()).await;
        let hubs = Arc::new(hubs);
        metrics.hub_synced(hubs.current().is_some());
        if hubs.current().is_none() {
            warnings.push("no hub index is loaded: runs cannot resolve components".into());
        }
        let options = crate::experiment::engine::Options {
            state_dir: host.config().state_dir.clone(),
            hub: config.hub.clone(),
            policy: policy.clone(),
            trusted_roots: host.config().trusted_roots.clone(),
            memory_limit: host.config().memory_limit,
            call_timeout: config.call_timeout,
        };
        let history = crate::experiment::store::history_path(&options.state_dir);
        let store =
            tokio::task::spawn_blocking(move || crate::experiment::store::Store::open(&history))
                .await
                .context("opening the history panicked")?
                .context("the experiment history cannot be opened")?;
        let experiments = Arc::new(Experiments::new(options, store, metrics.clone()));
        let agent = Arc::new(Agent::new(host, policy, hubs.clone(), metrics.clone()));
        let sync_task = hubs
            .clone()
            .spawn_sync(config.hub_sync_interval, metrics.clone());
        let app = App {
            agent,
            experiments,
            metrics,
            hubs,
            tokens: Arc::new(tokens),
            labels: Arc::new(config.labels.clone()),
            shutting_down: Arc::new(AtomicBool::new(false)),
            sync_task: Arc::new(Mutex::new(Some(sync_task))),
        };
        Ok((app, warnings))
    }

    /// Whether the agent is ready for work (`/readyz`): recovered (it is, once [`App::start`]
    /// returned), a hub index loaded, not shutting down; else why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("the agent is shutting down".into());
        }
        if self.hubs.current().is_none() {
            return Err("no hub index is loaded yet".into());
        }
        Ok(())
    }

    /// Emergency stop: refuses new runs and experiments with `reason`, reverts every run and
    /// experiment at once and waits until all are reverted.
    pub async fn emergency_stop(&self, reason: &str) -> EmergencyStopped {
        let why = format!("emergency stop: {reason}");
        self.metrics.set_emergency_stop(true);
        let (runs, experiments) = tokio::join!(
            self.agent.emergency_stop(reason),
            self.experiments.stop_all(&why)
        );
        EmergencyStopped { runs, experiments }
    }

    /// Clears an emergency stop: runs and experiments are accepted again. Returns whether one
    /// was active.
    /// Once the agent is shutting down nothing is accepted again: the shutdown's refusal stays.
    pub async fn clear_emergency_stop(&self) -> bool {
        if self.shutting_down.load(Ordering::SeqCst) {
            return false;
        }
        let was = self.agent.clear_emergency_stop().await;
        self.experiments.accept();
        self.metrics.set_emergency_stop(false);
        was
    }

    /// Shutdown: `/readyz` answers 503, the hub sync stops, every run and experiment is
    /// reverted; new ones stay refused for good.
    pub async fn shutdown(&self) -> StopAll {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.sync_task).take() {
            task.abort();
        }
        let (mut runs, experiments) =
            tokio::join!(self.agent.shutdown(), self.experiments.shutdown());
        // An experiment's failed revert is the truth about the host as much as a run's.
        runs.stopped += experiments.stopped;
        runs.failures.extend(experiments.failures);
        runs
    }
}

/// Reads the policy file, or grants nothing without one.
pub fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Policy::load(p).with_context(|| format!("cannot use policy {}", p.display())),
        None => Ok(Policy::default()),
    }
}
