//! The agent: a daemon that runs faults on request and always reverts them.
//!
//! On start it recovers what dead runs left in the journal *before* it accepts any work (see
//! [`crate::host::recover`]). Then it serves a small HTTP/1.1 JSON API on loopback ([`api`],
//! [`http`]). Every run is reverted when its duration ends, when it is stopped, when its lease
//! lapses (no heartbeat in time), on an emergency stop, and when the agent shuts down. An
//! emergency stop also refuses new runs until it is cleared.

pub mod api;
pub mod http;
pub mod run;

use crate::host::{Host, LoadError, Plugin};
use crate::policy::Policy;
use anyhow::Context as _;
use run::{Run, RunView, StopReason};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The shortest lease: anything shorter would lapse on an ordinary scheduling hiccup.
pub const MIN_LEASE: Duration = Duration::from_secs(1);

/// What a caller asks for when starting a run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The component's path on the agent's host.
    pub component: std::path::PathBuf,
    /// Parameters as a JSON object.
    pub params: serde_json::Value,
    /// How long to hold the fault.
    pub duration: Duration,
    /// Revert unless a heartbeat comes within this long of the last one.
    pub lease: Option<Duration>,
}

/// Why a run was not started; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An emergency stop (or a shutdown) is active.
    #[error("new runs are refused: {0}")]
    Refused(String),
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
#[derive(Debug, Clone, serde::Serialize)]
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
    runs: BTreeMap<String, Arc<Run>>,
}

/// The agent: a host, the operator's policy, and the runs.
pub struct Agent {
    host: Arc<Host>,
    policy: Policy,
    plugins: Mutex<HashMap<String, Arc<Plugin>>>,
    state: Mutex<State>,
    next: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere mid-update must not stop reverts.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// An agent over `host` (whose recovery has already run) with `policy`.
    pub fn new(host: Host, policy: Policy) -> Agent {
        Agent {
            host: Arc::new(host),
            policy,
            plugins: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
            next: AtomicU64::new(1),
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

    /// Loads a component once per digest; later runs reuse the checked plug-in.
    async fn plugin(&self, bytes: &[u8]) -> Result<Arc<Plugin>, StartError> {
        let key = hex::encode(Sha256::digest(bytes));
        if let Some(p) = lock(&self.plugins).get(&key) {
            return Ok(p.clone());
        }
        let plugin = match self.host.load(bytes, &self.policy).await {
            Ok(p) => Arc::new(p),
            Err(LoadError::Host(e)) => return Err(StartError::Host(e)),
            Err(e) => return Err(StartError::ComponentRefused(e.to_string())),
        };
        lock(&self.plugins).insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Starts a run; returns its id once its task is under way.
    pub async fn start(self: &Arc<Self>, req: RunRequest) -> Result<String, StartError> {
        if let Some(why) = self.refusing() {
            return Err(StartError::Refused(why));
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
        let bytes = std::fs::read(&req.component).map_err(|e| {
            StartError::Invalid(format!(
                "cannot read component {}: {e}",
                req.component.display()
            ))
        })?;
        let plugin = self.plugin(&bytes).await?;
        let params = req.params.to_string();
        plugin
            .validate(&self.host, &params)
            .await
            .map_err(|e| StartError::Invalid(format!("parameters refused: {e}")))?;
        let id = format!(
            "run-{}-{:04x}",
            self.next.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        let run = Arc::new(Run::new(
            &id,
            &req.component.display().to_string(),
            &plugin.label(),
            req.lease,
        ));
        // Checked again under the lock that an emergency stop takes: a run is either refused
        // here or in the set the emergency stop reverts, never neither.
        let mut state = lock(&self.state);
        if let Some(why) = &state.refusing {
            return Err(StartError::Refused(why.clone()));
        }
        state.runs.insert(id.clone(), run.clone());
        // The run's task ends only after its revert; shutdown and stops wait on the run itself.
        tokio::spawn(run.drive(self.host.clone(), plugin, params, req.duration));
        Ok(id)
    }

    /// One run.
    pub fn run(&self, id: &str) -> Option<Arc<Run>> {
        lock(&self.state).runs.get(id).cloned()
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Vec<RunView> {
        let runs: Vec<_> = lock(&self.state).runs.values().cloned().collect();
        runs.iter().map(|r| r.view()).collect()
    }

    /// Emergency stop: refuses new runs with `reason`, reverts every run at once and waits
    /// until all are reverted. New runs stay refused until [`Agent::clear_emergency_stop`].
    pub async fn emergency_stop(&self, reason: &str) -> StopAll {
        self.stop_all(format!("emergency stop: {reason}"), StopReason::Emergency)
            .await
    }

    /// Clears an emergency stop; returns whether one was active.
    pub fn clear_emergency_stop(&self) -> bool {
        let mut state = lock(&self.state);
        let was = state.refusing.is_some();
        state.refusing = None;
        was
    }

    /// Shutdown: like an emergency stop, for good.
    pub async fn shutdown(&self) -> StopAll {
        self.stop_all("the agent is shutting down".into(), StopReason::Shutdown)
            .await
    }

    async fn stop_all(&self, refusing: String, reason: StopReason) -> StopAll {
        let start = Instant::now();
        let runs: Vec<Arc<Run>> = {
            let mut state = lock(&self.state);
            state.refusing = Some(refusing);
            state.runs.values().cloned().collect()
        };
        let mut stopped = 0;
        for run in &runs {
            if !run.view().status.is_final() {
                stopped += 1;
            }
            run.stop(reason);
        }
        for run in &runs {
            run.finished().await;
        }
        // Then whatever the journal still holds is retried: a run's failed undo, or a change
        // adopted from an earlier crash. Its failures are the truth about the host.
        let mut executions: Vec<String> = self
            .host
            .journal()
            .outstanding(None)
            .into_iter()
            .map(|e| e.execution)
            .collect();
        executions.sort();
        executions.dedup();
        let mut failures = Vec::new();
        for execution in executions {
            failures.extend(self.host.undo_journal(&execution));
        }
        StopAll {
            stopped,
            reverted_in_ms: start.elapsed().as_secs_f64() * 1000.0,
            failures,
        }
    }
}

/// Reads the policy file, or grants nothing without one.
pub fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Policy::load(p).with_context(|| format!("cannot use policy {}", p.display())),
        None => Ok(Policy::default()),
    }
}
