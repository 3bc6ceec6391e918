//! Experiments run by the agent: started through the API (with an optional lease renewed by
//! heartbeat), watched live, stopped, and read back from the SQLite history.
//!
//! ```text
//! start: parse (400) ─► team (403) ─► refusing? (409) ─► a slot (503) ─► pre-run checks
//!        against the agent's synced hubs (422) ─► engine::run_live in a task of its own
//!        ─► lease watchdog ─► final record: history, metrics, stop/stop_all waiters
//! ```
//!
//! - **Teams.** A runner acts only for experiments whose `team:` is its own; an experiment
//!   without `team:` is an admin's alone. Reads follow the same rule (an admin reads all).
//! - **Bounded.** At most [`MAX_RUNNING`] experiments in flight (running, or in their pre-run
//!   checks); more are refused, not queued. A file is at most
//!   [`limits::FILE_BYTES`].
//! - **Leases.** With a lease, a watchdog stops the run
//!   (`Stop::Execution(StopReason::LeaseLapsed)`) unless a heartbeat came within the lease of
//!   the previous one (or of the start); everything reverts through the engine.
//! - **Never forever.** Each run's engine future runs in a task of its own under a supervisor:
//!   should it panic, its executions are told to stop (each reverts through the journal) and
//!   the record ends as `error`/`ERRORED` in the history, so nothing waits on it forever.
//! - **Never blocking.** No lock is held across an await; history calls go to the blocking
//!   pool.

use super::auth::{Principal, Role};
use super::metrics::Metrics;
use crate::execution::StopReason;
use crate::experiment::engine::{self, LiveRun, LogHandle, Options, Plan, Stop, Stopper};
use crate::experiment::parse;
use crate::experiment::record::{LogEntry, Record};
use crate::experiment::spec::{Experiment, limits};
use crate::experiment::store::{MAX_ID, MAX_LIST, Store, StoreError, Summary, Teams};
use crate::hub::Hub;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// Experiments in flight at once (running or in their pre-run checks).
pub const MAX_RUNNING: usize = 16;
/// The shortest lease: anything shorter would lapse on an ordinary scheduling hiccup.
pub const MIN_LEASE: Duration = super::MIN_LEASE;
/// The longest lease.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Longest file name a request may give (it is only shown, never opened).
pub const MAX_FILE_NAME: usize = 256;
/// Ended runs remembered in memory, so a late heartbeat or stop is told "ended", not "unknown".
const REMEMBER_ENDED: usize = 4096;
/// Pre-run checks (validate or start) at once; more wait their turn. Each makes a host and
/// loads components: on a small machine a flood of them must not starve the runs' reverts.
pub const MAX_PLANNING: usize = 4;

/// Why a request about an experiment was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file does not parse or breaks the format: every problem, located (400).
    #[error("the experiment is not valid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The pre-run checks failed: components, targets, grants (422).
    #[error("the pre-run checks failed: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The caller may not act for this experiment's team (403).
    #[error("{0}")]
    Forbidden(String),
    /// An emergency stop or a shutdown refuses new runs (409).
    #[error("new runs are refused: {0}")]
    Stopped(String),
    /// Too many experiments in flight (503).
    #[error("{0}")]
    Busy(String),
    /// No such execution (404).
    #[error("no execution with id {0:?}")]
    NotFound(String),
    /// It has ended: nothing to heartbeat or stop (409).
    #[error("execution {0} has ended")]
    Ended(String),
    /// The agent failed (500).
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The experiment file's text (YAML or JSON), at most 1 MiB.
    pub text: String,
    /// A name for the file in messages and the record (never opened).
    pub file: String,
    /// Revert everything unless a heartbeat comes within this long of the last one.
    pub lease: Option<Duration>,
    /// Who starts it.
    pub by: Principal,
}

/// What the pre-run checks found, for `validate` and a started run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    /// The experiment's name.
    pub name: String,
    /// Its team, if it names one.
    pub team: Option<String>,
    /// How long it is planned to take, in milliseconds.
    pub planned_ms: u64,
    /// One line per fault target and probe: what it resolved to and which grant covers it.
    pub plan: Vec<String>,
}

/// What stopping every experiment did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Stopped {
    /// Experiments that were running and are now ended.
    pub stopped: usize,
    /// Experiments whose revert failed, with what to do: the host may still be changed.
    pub failures: Vec<String>,
}

/// A running experiment's live state, for the event stream.
pub struct Live {
    /// The record as it is now; changes as the run goes (at most every
    /// [`engine::PUBLISH_EVERY`]). Its last value is the final record; then the sender is
    /// gone and `changed()` fails.
    pub record: watch::Receiver<Record>,
    /// Log lines from now on.
    pub log: broadcast::Receiver<LogEntry>,
}

/// The experiments this agent runs and has run.
pub struct Experiments {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    store: Store,
    metrics: Arc<Metrics>,
    max_running: usize,
    state: Mutex<State>,
    /// Shut down: new runs stay refused for good.
    closed: std::sync::atomic::AtomicBool,
    /// Pre-run checks at once (validate and start): each makes a host and loads components.
    planning: tokio::sync::Semaphore,
}

#[derive(Default)]
struct State {
    /// Why new runs are refused, when they are.
    refusing: Option<String>,
    /// Starts in their pre-run checks, holding a slot.
    starting: usize,
    running: BTreeMap<String, Entry>,
    /// Recently ended runs and their teams, oldest first.
    ended: VecDeque<(String, Option<String>)>,
    ended_set: HashMap<String, Option<String>>,
}

impl State {
    fn remember_ended(&mut self, id: String, team: Option<String>) {
        self.ended_set.insert(id.clone(), team.clone());
        self.ended.push_back((id, team));
        while self.ended.len() > REMEMBER_ENDED {
            if let Some((old, _)) = self.ended.pop_front() {
                self.ended_set.remove(&old);
            }
        }
    }
}

/// A run in flight.
struct Entry {
    team: Option<String>,
    record: watch::Receiver<Record>,
    log: LogHandle,
    stopper: Stopper,
    /// The last heartbeat (or the start); the lease watchdog ends when this is dropped.
    heartbeat: watch::Sender<Instant>,
    /// The final record, once there is one.
    finished: watch::Receiver<Option<Record>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Plain data: a panic elsewhere mid-update must not stop stops and reverts.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An id as shown in an error: at most [`MAX_ID`] characters of it.
fn shown(id: &str) -> String {
    id.chars().take(MAX_ID).collect()
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Runner => "runner",
        Role::Admin => "admin",
    }
}

/// Refuses `by` acting on something of `team` (`what` names it), naming both teams.
fn check_team(by: &Principal, team: Option<&str>, what: &str) -> Result<(), ExperimentError> {
    if by.acts_for(team) {
        return Ok(());
    }
    let who = format!("{} (a {} of team {})", by.name, role_word(by.role), by.team);
    Err(ExperimentError::Forbidden(match team {
        Some(team) => format!(
            "{who} may not act for {what}, which belongs to team {team}: only team {team} or an admin may"
        ),
        None => format!("{who} may not act for {what}, which names no team: only an admin may"),
    }))
}

/// Refuses a viewer where a runner is needed (the API checks roles too; this is the manager's
/// own guard).
fn check_runner(by: &Principal, what: &str) -> Result<(), ExperimentError> {
    if by.role >= Role::Runner {
        Ok(())
    } else {
        Err(ExperimentError::Forbidden(format!(
            "{} is a {}: {what} needs a runner or an admin",
            by.name,
            role_word(by.role)
        )))
    }
}

/// A slot of [`MAX_RUNNING`] held by a start in its pre-run checks; given back on drop (the
/// request was refused, or its future dropped) unless the run took it over.
struct Slot {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            let mut state = lock(&self.inner.state);
            state.starting = state.starting.saturating_sub(1);
        }
    }
}

impl Experiments {
    /// A manager running experiments with `options` (the hubs come with each call), keeping
    /// their history in `store` and counting them in `metrics`.
    pub fn new(options: Options, store: Store, metrics: Arc<Metrics>) -> Experiments {
        Experiments::with_limit(options, store, metrics, MAX_RUNNING)
    }

    /// [`Experiments::new`] with another limit of experiments in flight (at least 1).
    pub fn with_limit(
        options: Options,
        store: Store,
        metrics: Arc<Metrics>,
        max_running: usize,
    ) -> Experiments {
        Experiments {
            inner: Arc::new(Inner {
                options,
                store,
                metrics,
                max_running: max_running.max(1),
                state: Mutex::new(State::default()),
                closed: std::sync::atomic::AtomicBool::new(false),
                planning: tokio::sync::Semaphore::new(MAX_PLANNING),
            }),
        }
    }

    /// The history.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Why new runs are refused, if they are.
    pub fn refusing(&self) -> Option<String> {
        lock(&self.inner.state).refusing.clone()
    }

    /// Experiments in flight now.
    pub fn running(&self) -> usize {
        lock(&self.inner.state).running.len()
    }

    /// Parses and runs the pre-run checks without running anything.
    /// Only a caller who could start it may: a runner of its team, or an admin (the checks
    /// name processes and grants of this host).
    pub async fn validate(
        &self,
        text: &str,
        file: &str,
        hub: Option<Arc<Hub>>,
        by: &Principal,
    ) -> Result<Checked, ExperimentError> {
        check_runner(by, "validating an experiment")?;
        let experiment = parse_text(text, file).await?;
        check_team(
            by,
            experiment.team.as_deref(),
            &format!("experiment {:?}", experiment.name),
        )?;
        let plan = self.plan(experiment, text, file, hub).await?;
        Ok(checked_of(&plan))
    }

    /// Starts a run once its pre-run checks pass; returns its id and what was checked.
    pub async fn start(
        &self,
        req: StartRequest,
        hub: Option<Arc<Hub>>,
    ) -> Result<(String, Checked), ExperimentError> {
        check_runner(&req.by, "starting an experiment")?;
        if let Some(lease) = req.lease
            && !(MIN_LEASE..=MAX_LEASE).contains(&lease)
        {
            return Err(ExperimentError::Invalid(vec![format!(
                "lease: {} is not between {} and {}",
                humantime::format_duration(lease),
                humantime::format_duration(MIN_LEASE),
                humantime::format_duration(MAX_LEASE)
            )]));
        }
        let experiment = parse_text(&req.text, &req.file).await?;
        check_team(
            &req.by,
            experiment.team.as_deref(),
            &format!("experiment {:?}", experiment.name),
        )?;
        let slot = self.reserve()?;
        let mut plan = self.plan(experiment, &req.text, &req.file, hub).await?;
        plan.started_by = Some(req.by.name.clone());
        let checked = checked_of(&plan);
        let team = plan.experiment.team.clone();
        let id = engine::new_id();
        let stopper = Stopper::default();
        let live = engine::run_live(
            plan,
            id.clone(),
            Some(self.inner.store.clone()),
            stopper.clone(),
        );
        let (finished_tx, finished) = watch::channel(None);
        let (heartbeat, beats) = watch::channel(Instant::now());
        {
            // Checked again under the lock `stop_all` takes: a run is either refused here or
            // in the set it stops, never neither. Refused here, the plan is dropped unrun.
            let mut state = lock(&self.inner.state);
            if let Some(why) = &state.refusing {
                return Err(ExperimentError::Stopped(why.clone()));
            }
            state.running.insert(
                id.clone(),
                Entry {
                    team: team.clone(),
                    record: live.record(),
                    log: live.log(),
                    stopper: stopper.clone(),
                    heartbeat,
                    finished,
                },
            );
            state.starting = state.starting.saturating_sub(1);
            self.inner
                .metrics
                .set_experiments_running(state.running.len());
        }
        let mut slot = slot;
        slot.armed = false;
        drop(slot);
        tokio::spawn(supervise(
            self.inner.clone(),
            id.clone(),
            team,
            live,
            stopper.clone(),
            finished_tx,
        ));
        if let Some(lease) = req.lease {
            tokio::spawn(watch_lease(lease, beats, stopper));
        }
        tracing::info!(id, by = req.by.name, "experiment started");
        Ok((id, checked))
    }

    /// Takes one of the slots for experiments in flight.
    fn reserve(&self) -> Result<Slot, ExperimentError> {
        let mut state = lock(&self.inner.state);
        if let Some(why) = &state.refusing {
            return Err(ExperimentError::Stopped(why.clone()));
        }
        let busy = state.running.len() + state.starting;
        if busy >= self.inner.max_running {
            return Err(ExperimentError::Busy(format!(
                "{busy} experiments are in flight (running or in their pre-run checks), the most \
                 this agent holds at once; try again when one has ended"
            )));
        }
        state.starting += 1;
        Ok(Slot {
            inner: self.inner.clone(),
            armed: true,
        })
    }

    /// The pre-run checks, with the component load times counted.
    async fn plan(
        &self,
        experiment: Experiment,
        text: &str,
        file: &str,
        hub: Option<Arc<Hub>>,
    ) -> Result<Plan, ExperimentError> {
        let digest = crate::hub::Digest::of(text.as_bytes()).to_string();
        let _turn = self
            .inner
            .planning
            .acquire()
            .await
            .map_err(|e| ExperimentError::Host(anyhow::anyhow!("the planning queue: {e}")))?;
        let planned = engine::plan_with(experiment, file, &digest, &self.inner.options, hub).await;
        match planned {
            Ok(plan) => {
                for load in &plan.loads {
                    self.inner.metrics.component_loaded(load.kind, load.seconds);
                }
                Ok(plan)
            }
            Err(refused) if refused.emergency_stop => {
                Err(ExperimentError::Stopped(refused.problems.join("; ")))
            }
            Err(refused) => Err(ExperimentError::Refused(refused.problems)),
        }
    }

    /// Renews a running experiment's lease (`by` must act for its team).
    pub fn heartbeat(&self, id: &str, by: &Principal) -> Result<(), ExperimentError> {
        check_runner(by, "a heartbeat")?;
        let state = lock(&self.inner.state);
        match state.running.get(id) {
            Some(entry) => {
                check_team(by, entry.team.as_deref(), &format!("execution {id}"))?;
                entry.heartbeat.send_replace(Instant::now());
                Ok(())
            }
            None => Err(gone(&state, id, by)),
        }
    }

    /// Stops a running experiment; returns its record once everything is reverted.
    pub async fn stop(&self, id: &str, by: &Principal) -> Result<Record, ExperimentError> {
        check_runner(by, "stopping an experiment")?;
        let finished = {
            let state = lock(&self.inner.state);
            match state.running.get(id) {
                Some(entry) => {
                    check_team(by, entry.team.as_deref(), &format!("execution {id}"))?;
                    entry.stopper.stop(Stop::Execution(StopReason::UserStop));
                    Some(entry.finished.clone())
                }
                None => match gone(&state, id, by) {
                    ExperimentError::NotFound(_) => None,
                    e => return Err(e),
                },
            }
        };
        match finished {
            Some(finished) => self.final_record(id, finished).await,
            None => {
                // Not in memory: an older run of the history has ended too.
                let record = self.stored(id).await?;
                check_team(by, record.team.as_deref(), &format!("execution {id}"))?;
                Err(ExperimentError::Ended(id.to_string()))
            }
        }
    }

    /// Waits for a run's final record.
    async fn final_record(
        &self,
        id: &str,
        mut finished: watch::Receiver<Option<Record>>,
    ) -> Result<Record, ExperimentError> {
        let record = match finished.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            // The supervisor is gone without a record: the history has the last word.
            Err(_) => None,
        };
        match record {
            Some(r) => Ok(r),
            None => self.stored(id).await,
        }
    }

    /// Stops every running experiment (an emergency stop) and waits until all are reverted;
    /// new ones are refused with `why` until [`Experiments::accept`]. Returns how many were
    /// stopped.
    pub async fn stop_all(&self, why: &str) -> Stopped {
        self.stop_every(why, StopReason::EmergencyStop).await
    }

    /// [`Experiments::stop_all`] for a shutdown: for good, with the shutdown's reason.
    pub async fn shutdown(&self) -> Stopped {
        self.stop_every("the agent is shutting down", StopReason::Shutdown)
            .await
    }

    async fn stop_every(&self, why: &str, reason: StopReason) -> Stopped {
        if reason == StopReason::Shutdown {
            // Before anything stops: an `accept` racing the shutdown must not reopen starts.
            self.inner
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let waiting: Vec<watch::Receiver<Option<Record>>> = {
            let mut state = lock(&self.inner.state);
            state.refusing = Some(why.to_string());
            state
                .running
                .values()
                .map(|e| {
                    e.stopper.stop(Stop::Execution(reason));
                    e.finished.clone()
                })
                .collect()
        };
        let stopped = waiting.len();
        let mut failures = Vec::new();
        for mut finished in waiting {
            // An error means the supervisor is gone: its run has ended too (closed as errored,
            // the journal keeps what it had not undone).
            let ended = finished
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|r| r.clone());
            if let Some(record) = ended
                && record.host_changed()
            {
                failures.push(format!(
                    "experiment {}: a revert failed, the host may still be changed (see `faultline executions show {}`, then `faultline recover`)",
                    record.id, record.id
                ));
            }
        }
        Stopped { stopped, failures }
    }

    /// Accepts new runs again (an emergency stop cleared); never after a shutdown.
    pub fn accept(&self) {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        lock(&self.inner.state).refusing = None;
    }

    /// The newest executions first (running and stored), those `by` may see, at most `limit`
    /// (and at most [`MAX_LIST`]).
    pub async fn list(
        &self,
        limit: usize,
        by: &Principal,
    ) -> Result<Vec<Summary>, ExperimentError> {
        let limit = limit.min(MAX_LIST);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let running: Vec<Summary> = {
            let state = lock(&self.inner.state);
            state
                .running
                .values()
                .filter(|e| by.acts_for(e.team.as_deref()))
                .map(|e| Summary::of(&e.record.borrow()))
                .collect()
        };
        let (store, admin, team) = (
            self.inner.store.clone(),
            by.role == Role::Admin,
            by.team.clone(),
        );
        let stored = blocking(move || {
            let teams = if admin {
                Teams::All
            } else {
                Teams::Only(&team)
            };
            store.list_of(limit, teams)
        })
        .await?;
        // A running run's live summary replaces its stored one.
        let mut merged: BTreeMap<(u64, String), Summary> = BTreeMap::new();
        let live: HashMap<String, u64> = running
            .iter()
            .map(|s| (s.id.clone(), s.started_ms))
            .collect();
        for s in stored.into_iter().filter(|s| !live.contains_key(&s.id)) {
            merged.insert((s.started_ms, s.id.clone()), s);
        }
        for s in running {
            merged.insert((s.started_ms, s.id.clone()), s);
        }
        Ok(merged.into_values().rev().take(limit).collect())
    }

    /// One execution's record: live while it runs, else from the history.
    pub async fn get(&self, id: &str, by: &Principal) -> Result<Record, ExperimentError> {
        let live = {
            let state = lock(&self.inner.state);
            state
                .running
                .get(id)
                .map(|e| (e.team.clone(), e.record.borrow().clone()))
        };
        let record = match live {
            Some((team, record)) => {
                check_team(by, team.as_deref(), &format!("execution {id}"))?;
                return Ok(record);
            }
            None => self.stored(id).await?,
        };
        check_team(by, record.team.as_deref(), &format!("execution {id}"))?;
        Ok(record)
    }

    /// One execution's log lines so far.
    pub async fn log(&self, id: &str, by: &Principal) -> Result<Vec<LogEntry>, ExperimentError> {
        let live = {
            let state = lock(&self.inner.state);
            state
                .running
                .get(id)
                .map(|e| (e.team.clone(), e.log.clone()))
        };
        if let Some((team, log)) = live {
            check_team(by, team.as_deref(), &format!("execution {id}"))?;
            return Ok(log.kept());
        }
        let record = self.stored(id).await?;
        check_team(by, record.team.as_deref(), &format!("execution {id}"))?;
        let (store, key) = (self.inner.store.clone(), id.to_string());
        blocking(move || store.log(&key))
            .await
            .map_err(|e| not_found(e, id))
    }

    /// The live state of a running execution; `None` when it is not running (it has ended, or
    /// the id is unknown: [`Experiments::get`] tells which).
    pub fn live(&self, id: &str, by: &Principal) -> Result<Option<Live>, ExperimentError> {
        let state = lock(&self.inner.state);
        let Some(entry) = state.running.get(id) else {
            if let Some(team) = state.ended_set.get(id) {
                check_team(by, team.as_deref(), &format!("execution {id}"))?;
            }
            return Ok(None);
        };
        check_team(by, entry.team.as_deref(), &format!("execution {id}"))?;
        Ok(Some(Live {
            record: entry.record.clone(),
            log: entry.log.subscribe(),
        }))
    }

    /// A record of the history, or [`ExperimentError::NotFound`].
    async fn stored(&self, id: &str) -> Result<Record, ExperimentError> {
        let (store, key) = (self.inner.store.clone(), id.to_string());
        match blocking(move || store.get(&key)).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ExperimentError::NotFound(shown(id))),
            Err(e) => Err(not_found(e, id)),
        }
    }
}

/// Why an id is not running: it ended (and `by` may know), or it is unknown here.
fn gone(state: &State, id: &str, by: &Principal) -> ExperimentError {
    match state.ended_set.get(id) {
        Some(team) => match check_team(by, team.as_deref(), &format!("execution {id}")) {
            Ok(()) => ExperimentError::Ended(id.to_string()),
            Err(e) => e,
        },
        None => ExperimentError::NotFound(shown(id)),
    }
}

/// A history error: a malformed id is simply not found, anything else a host failure.
fn not_found(e: ExperimentError, id: &str) -> ExperimentError {
    match e {
        ExperimentError::Host(e)
            if matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::BadId { .. })
            ) =>
        {
            ExperimentError::NotFound(shown(id))
        }
        e => e,
    }
}

/// Runs sync history work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ExperimentError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r.map_err(ExperimentError::Host),
        Err(e) => Err(ExperimentError::Host(anyhow::anyhow!(
            "a history call panicked: {e}"
        ))),
    }
}

/// Parses an experiment's text on the blocking pool: every problem, located.
async fn parse_text(text: &str, file: &str) -> Result<Experiment, ExperimentError> {
    if file.is_empty() || file.len() > MAX_FILE_NAME || file.chars().any(char::is_control) {
        return Err(ExperimentError::Invalid(vec![format!(
            "file: a file name is 1 to {MAX_FILE_NAME} bytes without control characters, not {} bytes",
            file.len()
        )]));
    }
    if text.len() > limits::FILE_BYTES {
        return Err(ExperimentError::Invalid(vec![format!(
            "{file}: the experiment is {} bytes, more than the {} a file may be",
            text.len(),
            limits::FILE_BYTES
        )]));
    }
    let (text, file) = (text.to_string(), file.to_string());
    match tokio::task::spawn_blocking(move || parse::parse(&text, &file)).await {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(errors)) => Err(ExperimentError::Invalid(
            errors.0.iter().map(ToString::to_string).collect(),
        )),
        Err(e) => Err(ExperimentError::Host(anyhow::anyhow!(
            "parsing the experiment panicked: {e}"
        ))),
    }
}

/// What a plan resolved, one line per fault target and probe.
fn checked_of(plan: &Plan) -> Checked {
    let mut lines = Vec::new();
    for f in &plan.faults {
        if let Some(why) = &f.skip {
            lines.push(format!("step {}: {} skipped: {why}", f.name, f.reference));
            continue;
        }
        for t in &f.targets {
            lines.push(format!(
                "step {}: {} on {} ({}) for {}",
                f.name,
                f.plugin.label(),
                t.label,
                t.grant
                    .as_ref()
                    .map_or_else(|| "no grant needed".to_string(), |g| format!("grant {g}")),
                humantime::format_duration(f.duration)
            ));
        }
    }
    for p in &plan.probes {
        lines.push(format!(
            "probe {}: {} ({})",
            p.name,
            p.plugin.label(),
            p.mode.map_or("action", |m| m.as_str())
        ));
    }
    Checked {
        name: plan.experiment.name.clone(),
        team: plan.experiment.team.clone(),
        planned_ms: u64::try_from(plan.planned().as_millis()).unwrap_or(u64::MAX),
        plan: lines,
    }
}

/// Runs one experiment to its end in a task of its own and publishes its final record: to
/// the history (when the engine could not), the metrics, and whoever waits on it.
async fn supervise(
    inner: Arc<Inner>,
    id: String,
    team: Option<String>,
    live: LiveRun,
    stopper: Stopper,
    finished: watch::Sender<Option<Record>>,
) {
    let watched = live.record();
    let record = match tokio::spawn(live.run()).await {
        Ok(record) => record,
        Err(e) => {
            // Its executions run in tasks of their own: told to stop, each reverts.
            stopper.stop(Stop::Execution(StopReason::Abandoned));
            let mut record = watched.borrow().clone();
            record.close_abandoned(
                now_ms(),
                &format!(
                    "the run's task failed ({e}); its faults were told to revert, and the \
                     journal keeps whatever could not be for `faultline recover`"
                ),
            );
            tracing::error!(id, "an experiment's task failed: {e}");
            let (store, saved) = (inner.store.clone(), record.clone());
            if let Err(e) = blocking(move || store.save(&saved)).await {
                tracing::warn!(id, "cannot write the failed run's record: {e}");
            }
            record
        }
    };
    inner.metrics.experiment_ended(&record);
    // Under the lock, so whoever is woken by the final record finds the run ended (a second
    // stop is told "ended", not handed the record again).
    let mut state = lock(&inner.state);
    state.running.remove(&id);
    state.remember_ended(id, team);
    inner.metrics.set_experiments_running(state.running.len());
    finished.send_replace(Some(record));
}

/// Stops the run unless a heartbeat comes within `lease` of the previous one (or the start).
/// Ends when the run has (its heartbeat sender is dropped).
async fn watch_lease(lease: Duration, mut beats: watch::Receiver<Instant>, stopper: Stopper) {
    loop {
        let last = *beats.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep_until(last + lease) => {
                if beats.has_changed().unwrap_or(false) {
                    continue;
                }
                tracing::warn!(
                    "no heartbeat within the lease of {}: stopping the experiment",
                    humantime::format_duration(lease)
                );
                stopper.stop(Stop::Execution(StopReason::LeaseLapsed));
                return;
            }
            changed = beats.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
