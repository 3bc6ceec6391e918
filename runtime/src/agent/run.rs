//! One run in the agent: inject, hold for the duration, revert — cut short by a stop, an
//! emergency stop, a shutdown or a lapsed lease. Whatever ends it, the revert runs.

use crate::host::{Host, Plugin, Reverted};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// `inject` is running.
    Injecting,
    /// Injected; held until the duration ends or something cuts it short.
    Running,
    /// The revert is running.
    Reverting,
    /// Held for its whole duration, then reverted.
    Completed,
    /// Stopped through the API (or the agent shut down), then reverted.
    Stopped,
    /// Its lease lapsed (no heartbeat in time), then it was reverted.
    RevertedAfterLeaseLapse,
    /// An emergency stop cut it short, then it was reverted.
    EmergencyStopped,
    /// Inject failed (everything it did was reverted) or the revert failed (see
    /// `revert_failures`: the journal keeps those changes for a later recovery).
    Error,
}

impl Status {
    /// Whether the run has ended (reverted or failed for good).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Injecting | Status::Running | Status::Reverting
        )
    }
}

/// Why a run was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `POST /v1/runs/{id}/stop`.
    Api,
    /// `POST /v1/emergency-stop`.
    Emergency,
    /// The agent is shutting down (SIGTERM, SIGINT).
    Shutdown,
    /// No heartbeat within the lease.
    LeaseLapsed,
}

impl StopReason {
    fn status(self) -> Status {
        match self {
            StopReason::Api | StopReason::Shutdown => Status::Stopped,
            StopReason::Emergency => Status::EmergencyStopped,
            StopReason::LeaseLapsed => Status::RevertedAfterLeaseLapse,
        }
    }
}

/// What `GET /v1/runs/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The run's id (also its execution id in the journal).
    pub id: String,
    /// The component's path as given.
    pub component: String,
    /// `name@version` of the fault.
    pub fault: String,
    /// Where it is.
    pub status: Status,
    /// The lease, when it has one.
    pub lease_ms: Option<u64>,
    /// When it was started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long the revert took, once it ran.
    pub revert_ms: Option<f64>,
    /// What went wrong (inject failure), if anything.
    pub error: Option<String>,
    /// What went wrong in the guest's own revert (the journal still undid its changes).
    pub guest_revert_error: Option<String>,
    /// Changes that could not be undone, each with what to run by hand; empty when clean.
    pub revert_failures: Vec<String>,
}

/// A run's shared state: the API reads it, the run's task drives it.
#[derive(Debug)]
pub struct Run {
    lease: Option<Duration>,
    heartbeat: Mutex<Instant>,
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Sender<bool>,
    view: Mutex<RunView>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data; the data
    // is still what the run needs to revert, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Run {
    /// A new run, not yet started.
    pub fn new(id: &str, component: &str, fault: &str, lease: Option<Duration>) -> Run {
        Run {
            lease,
            heartbeat: Mutex::new(Instant::now()),
            stop: watch::Sender::new(None),
            done: watch::Sender::new(false),
            view: Mutex::new(RunView {
                id: id.to_string(),
                component: component.to_string(),
                fault: fault.to_string(),
                status: Status::Injecting,
                lease_ms: lease.map(|l| l.as_millis() as u64),
                started_ms: now_ms(),
                revert_ms: None,
                error: None,
                guest_revert_error: None,
                revert_failures: Vec::new(),
            }),
        }
    }

    /// What the API shows.
    pub fn view(&self) -> RunView {
        lock(&self.view).clone()
    }

    /// Renews the lease. Returns the status when the run has already ended.
    pub fn heartbeat(&self) -> Result<(), Status> {
        let status = lock(&self.view).status;
        if status.is_final() {
            return Err(status);
        }
        *lock(&self.heartbeat) = Instant::now();
        Ok(())
    }

    /// Asks the run to stop (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        self.stop.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the run has ended (reverted, or failed for good).
    pub async fn finished(&self) -> RunView {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
        self.view()
    }

    fn set(&self, status: Status) {
        lock(&self.view).status = status;
    }

    /// Resolves when the run must be cut short: a stop was asked for or the lease lapsed.
    async fn cut_short(&self) -> StopReason {
        let mut rx = self.stop.subscribe();
        loop {
            let deadline = self.lease.map(|l| *lock(&self.heartbeat) + l);
            let lapse = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.wait_for(Option::is_some) => {
                    return match r {
                        Ok(reason) => (*reason).unwrap_or(StopReason::Shutdown),
                        // The sender lives in `self`; gone means the agent is going away.
                        Err(_) => StopReason::Shutdown,
                    };
                }
                _ = lapse => {
                    // A heartbeat may have come in while we slept: only a stale one lapses.
                    if let (Some(lease), Some(d)) = (self.lease, deadline)
                        && *lock(&self.heartbeat) + lease <= d
                    {
                        return StopReason::LeaseLapsed;
                    }
                }
            }
        }
    }

    /// Drives the run to its end: inject, hold, revert. Never returns before the revert ran.
    pub async fn drive(
        self: Arc<Self>,
        host: Arc<Host>,
        plugin: Arc<Plugin>,
        params: String,
        duration: Duration,
    ) {
        let execution = lock(&self.view).id.clone();
        let cut = self.cut_short();
        tokio::pin!(cut);
        let injected = tokio::select! {
            r = plugin.inject(&host, &execution, &params, duration) => Ok(r),
            reason = &mut cut => Err(reason),
        };
        let (state, ended) = match injected {
            Ok(Ok(i)) => {
                self.set(Status::Running);
                let ended = tokio::select! {
                    _ = tokio::time::sleep(duration) => Status::Completed,
                    reason = &mut cut => reason.status(),
                };
                (Some(i.state), ended)
            }
            Ok(Err(e)) => {
                lock(&self.view).error = Some(format!("inject failed: {e}"));
                (None, Status::Error)
            }
            Err(reason) => (None, reason.status()),
        };
        self.set(Status::Reverting);
        let start = Instant::now();
        let Reverted {
            guest_error,
            failures,
        } = plugin.revert(&host, &execution, state.as_deref()).await;
        {
            let mut view = lock(&self.view);
            view.revert_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
            view.guest_revert_error = guest_error;
            for f in &failures {
                tracing::error!(run = %execution, "revert failed: {f}");
            }
            // A failed revert is an error whatever ended the run: the host may still be changed.
            view.status = if failures.is_empty() {
                ended
            } else {
                Status::Error
            };
            view.revert_failures = failures;
        }
        self.done.send_replace(true);
    }
}
