//! One run in the agent: an [`Execution`](crate::execution) and what the API shows of it. The
//! lifecycle itself — inject, hold, revert, cut short by a stop, an emergency stop, a shutdown
//! or a lapsed lease — is the execution's; this maps its outcome to the API's statuses.

use crate::execution::{Handle, Outcome, Phase, StopReason};
use serde::Serialize;

/// Where a run is in its life, as the API says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Inject or a tick failed (everything it did was reverted), the run was abandoned by a panic (and
    /// reverted), or the revert failed (see `revert_failures`: the journal keeps those changes
    /// for a later recovery).
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

    /// The status an ended run's outcome maps to.
    pub fn of(outcome: &Outcome) -> Status {
        if !outcome.is_clean() {
            return Status::Error;
        }
        match outcome.reason {
            StopReason::DurationOver => Status::Completed,
            StopReason::UserStop
            | StopReason::Shutdown
            | StopReason::Sigint
            | StopReason::Sigterm => Status::Stopped,
            StopReason::LeaseLapsed => Status::RevertedAfterLeaseLapse,
            StopReason::EmergencyStop => Status::EmergencyStopped,
            StopReason::InjectFailed | StopReason::TickFailed | StopReason::Abandoned => {
                Status::Error
            }
        }
    }
}

/// What `GET /v1/runs/{id}` shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    /// The run's id (also its execution id in the journal).
    pub id: String,
    /// The component's hub reference as given.
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
    /// Why inject or a tick failed, if one did.
    pub error: Option<String>,
    /// Ticks a ticking fault ran, once the run has ended.
    pub ticks: Option<u64>,
    /// What went wrong in the guest's own revert (the journal undid its changes anyway).
    pub guest_revert_error: Option<String>,
    /// Changes that could not be undone, each with what to run by hand; empty when clean.
    pub revert_failures: Vec<String>,
    /// The team that owns it.
    pub team: String,
    /// The name of the token that started it.
    pub started_by: String,
}

/// A run the agent holds: the execution's handle and the reference it was started with.
#[derive(Debug, Clone)]
pub struct Run {
    /// The execution.
    pub handle: Handle,
    /// The hub reference the request named.
    pub component: String,
    /// The team that owns it.
    pub team: String,
    /// The name of the token that started it.
    pub started_by: String,
}

impl Run {
    /// What the API shows.
    pub fn view(&self) -> RunView {
        let h = &self.handle;
        let outcome = h.outcome();
        let status = match (&outcome, h.phase()) {
            (Some(o), _) => Status::of(o),
            (None, Phase::Loaded | Phase::Injecting) => Status::Injecting,
            (None, Phase::Injected) => Status::Running,
            (None, Phase::Reverting | Phase::Ended) => Status::Reverting,
        };
        RunView {
            id: h.id().to_string(),
            component: self.component.clone(),
            fault: h.fault().to_string(),
            status,
            lease_ms: h
                .lease()
                .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
            started_ms: h.started_ms(),
            revert_ms: outcome.as_ref().map(|o| o.revert_ms),
            error: outcome.as_ref().and_then(|o| {
                o.inject_error
                    .as_ref()
                    .map(|e| format!("inject failed: {e}"))
                    .or_else(|| o.tick_error.as_ref().map(|e| format!("tick failed: {e}")))
            }),
            ticks: outcome.as_ref().map(|o| o.ticks),
            guest_revert_error: outcome.as_ref().and_then(|o| o.guest_revert_error.clone()),
            revert_failures: outcome
                .as_ref()
                .map(|o| o.revert_failures.clone())
                .unwrap_or_default(),
            team: self.team.clone(),
            started_by: self.started_by.clone(),
        }
    }

    /// Whether the run has ended.
    pub fn is_final(&self) -> bool {
        self.handle.outcome().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_tick_is_an_error_status() {
        let outcome = Outcome::ended(StopReason::TickFailed);
        assert_eq!(Status::of(&outcome), Status::Error);
    }
}
