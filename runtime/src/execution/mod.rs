//! One lifecycle for every fault run — the CLI's `inject`, the agent's runs and the experiment
//! engine all drive faults through [`Execution`], never through their own copy of
//! inject → hold → revert.
//!
//! ```text
//! loaded ─► injecting ─► injected (held) ─► reverting ─► ended
//!               │                 ▲              ▲
//!               └── stop / failure ┴──────────────┘
//! ```
//!
//! A fault that exports `tick` is called on its own schedule while held (see
//! [`FaultPlugin::tick`]): the first tick right after `inject` returns, each next one when the
//! previous asked for, counted from its start; never past the duration. A tick that fails ends
//! the run ([`StopReason::TickFailed`]); a stop cancels a tick in flight (host calls it started
//! still finish journalling before the revert undoes them).
//!
//! A run is cut short through its [`Handle`] with a [`StopReason`] (or by a lapsed lease); it
//! publishes [`Event`]s (phase changes, host events, guest `log` lines, each timestamped) and
//! ends with one typed [`Outcome`]. A guard reverts and replays the journal whenever the run
//! ends — also when the task driving it panics or drops it half-way.

use crate::capability::LogLine;
use crate::host::{FaultPlugin, Host, Reverted, TickInput};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// Events an execution keeps for late readers; older ones are dropped (and counted).
const HISTORY: usize = 1024;

/// How often a ticking fault's progress is summed up in one event (never one per tick).
const TICK_SUMMARY: Duration = Duration::from_secs(60);

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Created; nothing has run yet.
    Loaded,
    /// `inject` is running.
    Injecting,
    /// Injected and held.
    Injected,
    /// The revert is running.
    Reverting,
    /// Reverted (or failed for good); the outcome is known.
    Ended,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Held for its whole duration.
    DurationOver,
    /// A person or a pipeline asked for it to stop.
    UserStop,
    /// No heartbeat within the lease.
    LeaseLapsed,
    /// An emergency stop.
    EmergencyStop,
    /// SIGINT.
    Sigint,
    /// SIGTERM.
    Sigterm,
    /// `inject` failed (error, trap, deadline, memory).
    InjectFailed,
    /// A `tick` failed (error, trap, deadline, memory, oversized state).
    TickFailed,
    /// The agent is shutting down.
    Shutdown,
    /// The task driving the run panicked or dropped it; the guard reverted.
    Abandoned,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::DurationOver => "duration over",
            StopReason::UserStop => "stopped on request",
            StopReason::LeaseLapsed => "lease lapsed",
            StopReason::EmergencyStop => "emergency stop",
            StopReason::Sigint => "SIGINT",
            StopReason::Sigterm => "SIGTERM",
            StopReason::InjectFailed => "inject failed",
            StopReason::TickFailed => "a tick failed",
            StopReason::Shutdown => "shutdown",
            StopReason::Abandoned => "the run's task panicked or was dropped",
        })
    }
}

/// How a run ended: one value every caller maps to its own vocabulary (exit codes, statuses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The execution id (also the journal's).
    pub id: String,
    /// `name@version` of the fault.
    pub fault: String,
    /// Why it ended.
    pub reason: StopReason,
    /// Whether `inject` returned successfully.
    pub injected: bool,
    /// Changes `inject` journalled.
    pub changes: usize,
    /// What went wrong in `inject`, if it failed.
    pub inject_error: Option<String>,
    /// Ticks that returned successfully (ticking faults only).
    pub ticks: u64,
    /// What went wrong in the tick that ended the run, if one did.
    pub tick_error: Option<String>,
    /// What went wrong in the guest's own revert (the journal undid its changes anyway).
    pub guest_revert_error: Option<String>,
    /// Changes that could not be undone, with what to run by hand; empty when the host is clean.
    pub revert_failures: Vec<String>,
    /// How long `inject` took, in milliseconds.
    pub inject_ms: Option<f64>,
    /// How long the revert took, in milliseconds.
    pub revert_ms: f64,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_ms: u64,
}

impl Outcome {
    fn new(id: &str, fault: String, reason: StopReason, started_ms: u64) -> Outcome {
        Outcome {
            id: id.to_string(),
            fault,
            reason,
            injected: false,
            changes: 0,
            inject_error: None,
            ticks: 0,
            tick_error: None,
            guest_revert_error: None,
            revert_failures: Vec::new(),
            inject_ms: None,
            revert_ms: 0.0,
            started_ms,
            ended_ms: 0,
        }
    }

    /// Whether the host is back as it was.
    pub fn is_clean(&self) -> bool {
        self.revert_failures.is_empty()
    }

    /// An injected run that ended for `reason`, for the tests of whoever maps outcomes.
    #[cfg(test)]
    pub(crate) fn ended(reason: StopReason) -> Outcome {
        let mut outcome = Outcome::new("ex-test", "ticking@0.1.0".into(), reason, 0);
        outcome.injected = true;
        if reason == StopReason::TickFailed {
            outcome.ticks = 3;
            outcome.tick_error = Some("tick trapped: boom".into());
        }
        outcome
    }
}

/// What happened, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The run moved to another phase.
    Phase {
        /// The new phase.
        phase: Phase,
    },
    /// Something the host did or saw.
    Host {
        /// `info`, `warn` or `error`.
        level: &'static str,
        /// What.
        message: String,
    },
    /// A line the fault logged.
    Log {
        /// The plug-in.
        plugin: String,
        /// Its level as a word.
        level: &'static str,
        /// The line.
        message: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The execution id; also the journal's key for its changes.
    pub id: String,
    /// Parameters, a JSON object the fault validated.
    pub params: String,
    /// How long to hold the fault.
    pub duration: Duration,
    /// Revert unless a heartbeat comes within this long of the last one.
    pub lease: Option<Duration>,
}

/// A new execution id: sortable by time, unique.
pub fn new_id() -> String {
    format!("ex-{:013}-{:08x}", now_ms(), rand::random::<u32>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data (a timestamp, a ring of events): a panic mid-update leaves it usable, and the
    // revert must go on whatever happened.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Shared {
    id: String,
    fault: String,
    started_ms: u64,
    lease: Option<Duration>,
    heartbeat: Mutex<Instant>,
    stop: watch::Sender<Option<StopReason>>,
    phase: watch::Sender<Phase>,
    outcome: watch::Sender<Option<Arc<Outcome>>>,
    events: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
    /// The host-wide emergency-stop marker ([`crate::estop`]): while it exists the run stops.
    estop: std::path::PathBuf,
}

impl Shared {
    fn emit(&self, kind: EventKind) {
        let event = Event {
            at_ms: now_ms(),
            kind,
        };
        {
            let mut h = lock(&self.history);
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    fn host_event(&self, level: &'static str, message: String) {
        self.emit(EventKind::Host { level, message });
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
        self.emit(EventKind::Phase { phase });
    }

    fn publish(&self, outcome: Outcome) -> Arc<Outcome> {
        for f in &outcome.revert_failures {
            self.host_event("error", format!("revert failed: {f}"));
        }
        let outcome = Arc::new(outcome);
        // Phase first: whoever sees the outcome (`Handle::finished`) also sees the run ended.
        self.set_phase(Phase::Ended);
        self.outcome.send_replace(Some(outcome.clone()));
        outcome
    }

    /// Resolves when the run must be cut short: a stop was asked for, the lease lapsed, or
    /// the host-wide emergency stop was set (looked for every 250 ms).
    async fn cut_short(&self) -> StopReason {
        let mut rx = self.stop.subscribe();
        let mut estop = tokio::time::interval(Duration::from_millis(250));
        loop {
            // A lease too long to add to an instant never lapses (no overflow panic).
            let deadline = self
                .lease
                .and_then(|l| lock(&self.heartbeat).checked_add(l));
            let lapse = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let look = tokio::select! {
                _ = estop.tick() => true,
                r = rx.wait_for(Option::is_some) => {
                    return match r {
                        Ok(reason) => (*reason).unwrap_or(StopReason::Shutdown),
                        Err(_) => StopReason::Shutdown,
                    };
                }
                _ = lapse => {
                    // A heartbeat may have come in while we slept: only a stale one lapses.
                    if let (Some(lease), Some(d)) = (self.lease, deadline)
                        && lock(&self.heartbeat).checked_add(lease).is_some_and(|t| t <= d)
                    {
                        return StopReason::LeaseLapsed;
                    }
                    false
                }
            };
            // On the blocking pool: a stat in the state directory.
            if look && tokio::fs::try_exists(&self.estop).await.unwrap_or(false) {
                return StopReason::EmergencyStop;
            }
        }
    }
}

/// A handle on a run: stop it, renew its lease, follow it, wait for its outcome. Cheap to clone.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.0.id)
            .field("phase", &self.phase())
            .finish()
    }
}

impl Handle {
    /// The execution id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// `name@version` of the fault.
    pub fn fault(&self) -> &str {
        &self.0.fault
    }

    /// When the run started, in milliseconds since the Unix epoch.
    pub fn started_ms(&self) -> u64 {
        self.0.started_ms
    }

    /// The lease, if the run has one.
    pub fn lease(&self) -> Option<Duration> {
        self.0.lease
    }

    /// Where the run is.
    pub fn phase(&self) -> Phase {
        *self.0.phase.borrow()
    }

    /// The outcome, once the run has ended.
    pub fn outcome(&self) -> Option<Arc<Outcome>> {
        self.0.outcome.borrow().clone()
    }

    /// Asks the run to stop; the first reason wins. Returns whether this call set it.
    pub fn stop(&self, reason: StopReason) -> bool {
        self.0.stop.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        })
    }

    /// Renews the lease; `false` when the run has already ended.
    pub fn heartbeat(&self) -> bool {
        if self.phase() == Phase::Ended {
            return false;
        }
        *lock(&self.0.heartbeat) = Instant::now();
        true
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    /// The events so far (the newest 1,024 of them).
    pub fn history(&self) -> Vec<Event> {
        lock(&self.0.history).iter().cloned().collect()
    }

    /// Waits until the run has ended and returns its outcome.
    pub async fn finished(&self) -> Arc<Outcome> {
        let mut rx = self.0.outcome.subscribe();
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                return o;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self.0`, so this cannot happen; wait for nothing rather
                // than claim an outcome we do not have.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A fault run, ready to be driven by [`Execution::run`].
pub struct Execution {
    host: Arc<Host>,
    plugin: Arc<FaultPlugin>,
    spec: Spec,
    shared: Arc<Shared>,
}

impl Execution {
    /// A run of `plugin` on `host` as `spec` says; nothing happens until [`Execution::run`].
    pub fn new(host: Arc<Host>, plugin: Arc<FaultPlugin>, spec: Spec) -> Execution {
        let shared = Arc::new(Shared {
            id: spec.id.clone(),
            fault: plugin.label(),
            started_ms: now_ms(),
            lease: spec.lease,
            heartbeat: Mutex::new(Instant::now()),
            stop: watch::Sender::new(None),
            phase: watch::Sender::new(Phase::Loaded),
            outcome: watch::Sender::new(None),
            events: broadcast::channel(256).0,
            history: Mutex::new(VecDeque::new()),
            estop: crate::estop::marker(&host.config().state_dir),
        });
        Execution {
            host,
            plugin,
            spec,
            shared,
        }
    }

    /// A handle on this run.
    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }

    /// Drives the run to its end: inject, hold, revert. The revert always runs: when this
    /// future is dropped or its task panics before the end, a guard reverts in a task of its
    /// own and publishes the outcome.
    pub async fn run(self) -> Arc<Outcome> {
        let Execution {
            host,
            plugin,
            spec,
            shared,
        } = self;
        let mut guard = Guard {
            host: host.clone(),
            plugin: plugin.clone(),
            shared: shared.clone(),
            state: None,
            armed: true,
        };
        let _running = host.running();
        let logs = shared.clone();
        let _route = host.route_logs(
            &spec.id,
            Arc::new(move |line: LogLine| {
                logs.emit(EventKind::Log {
                    plugin: line.plugin,
                    level: line.level.as_str(),
                    message: line.message,
                })
            }),
        );
        if !plugin.description.revertible {
            shared.host_event(
                "warn",
                format!(
                    "{} cannot be undone (revertible = false): its effect stays after revert",
                    plugin.label()
                ),
            );
        }
        shared.set_phase(Phase::Injecting);
        let cut = shared.cut_short();
        tokio::pin!(cut);
        let start = Instant::now();
        let injected = tokio::select! {
            r = plugin.inject(&host, &spec.id, &spec.params, spec.duration) => Ok(r),
            reason = &mut cut => Err(reason),
        };
        let inject_ms = start.elapsed().as_secs_f64() * 1000.0;
        let mut outcome = Outcome::new(
            &spec.id,
            plugin.label(),
            StopReason::DurationOver,
            shared.started_ms,
        );
        match injected {
            Ok(Ok(i)) => {
                outcome.injected = true;
                outcome.changes = i.changes.len();
                outcome.inject_ms = Some(inject_ms);
                guard.state = Some(i.state);
                shared.host_event(
                    "info",
                    format!(
                        "injected {} in {inject_ms:.1} ms ({} change{})",
                        plugin.label(),
                        i.changes.len(),
                        if i.changes.len() == 1 { "" } else { "s" }
                    ),
                );
                shared.set_phase(Phase::Injected);
                let schedule = Schedule {
                    host: &host,
                    plugin: &plugin,
                    shared: &shared,
                    duration: spec.duration,
                };
                let mut ticks = Ticks::default();
                outcome.reason = tokio::select! {
                    r = schedule.hold(&mut guard.state, &mut ticks) => r,
                    // Dropping the schedule cancels a tick in flight; the revert's undo waits
                    // for the host calls it started.
                    reason = &mut cut => reason,
                };
                if plugin.ticks() {
                    shared.host_event("info", ticks.summary());
                }
                outcome.ticks = ticks.done;
                outcome.tick_error = ticks.error;
            }
            Ok(Err(e)) => {
                shared.host_event("error", format!("inject failed: {e}; reverting"));
                outcome.reason = StopReason::InjectFailed;
                outcome.inject_error = Some(e.to_string());
            }
            Err(reason) => {
                shared.host_event("warn", format!("{reason} during inject: reverting"));
                outcome.reason = reason;
            }
        }
        if outcome.injected && outcome.reason != StopReason::DurationOver {
            shared.host_event("warn", format!("{}: reverting early", outcome.reason));
        }
        shared.set_phase(Phase::Reverting);
        let start = Instant::now();
        let reverted = plugin.revert(&host, &spec.id, guard.state.as_deref()).await;
        guard.armed = false;
        finish(&shared, &mut outcome, reverted, start);
        shared.publish(outcome)
    }
}

/// What a ticking fault did while held.
#[derive(Default)]
struct Ticks {
    /// Ticks that returned successfully.
    done: u64,
    /// Changes they journalled.
    changes: usize,
    /// Why the last one failed.
    error: Option<String>,
}

impl Ticks {
    fn summary(&self) -> String {
        format!(
            "{} tick{} ({} change{})",
            self.done,
            if self.done == 1 { "" } else { "s" },
            self.changes,
            if self.changes == 1 { "" } else { "s" }
        )
    }
}

/// The hold of one run: a sleep for the duration, or a ticking fault's schedule.
struct Schedule<'a> {
    host: &'a Host,
    plugin: &'a FaultPlugin,
    shared: &'a Shared,
    duration: Duration,
}

impl Schedule<'_> {
    /// Holds the fault until its duration is over, ticking it if it ticks. Each tick's state
    /// replaces `state` as soon as it returns, so the revert gets the newest.
    async fn hold(&self, state: &mut Option<Vec<u8>>, ticks: &mut Ticks) -> StopReason {
        let held = tokio::time::Instant::now();
        // A duration too long for the clock is open-ended.
        let end = held.checked_add(self.duration);
        let until_end = async {
            match end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        if !self.plugin.ticks() {
            until_end.await;
            return StopReason::DurationOver;
        }
        tokio::pin!(until_end);
        let mut next = held;
        let mut summed = held;
        loop {
            if end.is_some_and(|end| next >= end) {
                until_end.await;
                return StopReason::DurationOver;
            }
            tokio::time::sleep_until(next).await;
            let started = tokio::time::Instant::now();
            let input = TickInput {
                state: state.as_deref().unwrap_or_default(),
                tick: ticks.done,
                elapsed: started - held,
                remaining: end.map(|end| end.saturating_duration_since(started)),
            };
            let id = &self.shared.id;
            // Never past the duration: a tick still running at the end is cut off.
            let ticked = tokio::select! {
                r = self.plugin.tick(self.host, id, input) => r,
                _ = &mut until_end => return StopReason::DurationOver,
            };
            match ticked {
                Ok(t) => {
                    ticks.done += 1;
                    ticks.changes += t.changes.len();
                    *state = Some(t.state);
                    match t.next {
                        Some(after) => next = started + after,
                        None => {
                            self.shared.host_event(
                                "info",
                                format!("{}: no more ticks; held until the end", ticks.summary()),
                            );
                            until_end.await;
                            return StopReason::DurationOver;
                        }
                    }
                }
                Err(e) => {
                    self.shared.host_event(
                        "error",
                        format!("tick {} failed: {e}; reverting", ticks.done),
                    );
                    ticks.error = Some(e.to_string());
                    return StopReason::TickFailed;
                }
            }
            if started - summed >= TICK_SUMMARY {
                summed = started;
                self.shared
                    .host_event("info", format!("{} so far", ticks.summary()));
            }
        }
    }
}

fn finish(shared: &Shared, outcome: &mut Outcome, reverted: Reverted, start: Instant) {
    outcome.revert_ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Some(e) = &reverted.guest_error {
        shared.host_event(
            "warn",
            format!("guest revert failed ({e}); the host journal undid its changes"),
        );
    }
    if reverted.is_clean() {
        shared.host_event(
            "info",
            format!("reverted in {:.1} ms: host clean", outcome.revert_ms),
        );
    }
    outcome.guest_revert_error = reverted.guest_error;
    outcome.revert_failures = reverted.failures;
    outcome.ended_ms = now_ms();
}

/// Reverts a run that did not reach its own revert: its future was dropped or its task
/// panicked.
struct Guard {
    host: Arc<Host>,
    plugin: Arc<FaultPlugin>,
    shared: Arc<Shared>,
    state: Option<Vec<u8>>,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (host, plugin, shared) = (self.host.clone(), self.plugin.clone(), self.shared.clone());
        let state = self.state.take();
        let injected = state.is_some();
        let revert = async move {
            shared.host_event(
                "error",
                "the run was abandoned (its task panicked or was dropped): reverting".into(),
            );
            shared.set_phase(Phase::Reverting);
            let start = Instant::now();
            let id = shared.id.clone();
            let reverting = {
                let (host, plugin, id) = (host.clone(), plugin.clone(), id.clone());
                tokio::spawn(async move { plugin.revert(&host, &id, state.as_deref()).await })
            };
            let reverted = match reverting.await {
                Ok(r) => r,
                // The revert itself panicked: the journal still holds everything; undo it.
                Err(e) => Reverted {
                    guest_error: Some(format!("the revert panicked: {e}")),
                    failures: host.undo_journal(&id).await,
                },
            };
            let mut outcome = Outcome::new(
                &id,
                plugin.label(),
                StopReason::Abandoned,
                shared.started_ms,
            );
            outcome.injected = injected;
            finish(&shared, &mut outcome, reverted, start);
            shared.publish(outcome);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(revert);
            }
            // No runtime here (dropped after it shut down): revert on a thread with its own.
            Err(_) => {
                let thread = std::thread::Builder::new()
                    .name("faultline-revert".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(revert),
                            Err(e) => tracing::error!(
                                "cannot revert an abandoned run: no runtime ({e}); \
                                 `faultline recover` will undo it"
                            ),
                        }
                    });
                if let Ok(t) = thread {
                    let _ = t.join();
                }
            }
        }
    }
}
