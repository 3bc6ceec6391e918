//! Experiments run by the agent: started through the API (with an optional lease renewed by
//! heartbeat), watched live, stopped, and read back from the SQLite history.
//!
//! STUB (owner: experiments helper): the signatures are the contract the API builds on.

use super::auth::Principal;
use crate::experiment::record::{LogEntry, Record};
use crate::experiment::store::Summary;
use crate::hub::Hub;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

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

/// A running experiment's live state, for the event stream.
pub struct Live {
    /// The record as it is now; changes as the run goes.
    pub record: watch::Receiver<Record>,
    /// Log lines from now on.
    pub log: broadcast::Receiver<LogEntry>,
}

/// The experiments this agent runs and has run.
pub struct Experiments {}

impl Experiments {
    /// A manager running with `options`, keeping the history in `store`, counting in
    /// `metrics`. (Stub signature added by the api helper for `App::start`.)
    pub fn new(
        _options: crate::experiment::engine::Options,
        _store: crate::experiment::store::Store,
        _metrics: Arc<super::metrics::Metrics>,
    ) -> Experiments {
        Experiments {}
    }

    /// Parses and runs the pre-run checks without running anything.
    pub async fn validate(
        &self,
        _text: &str,
        _file: &str,
        _hub: Option<Arc<Hub>>,
    ) -> Result<Checked, ExperimentError> {
        Err(ExperimentError::Host(anyhow::anyhow!("not yet")))
    }

    /// Starts a run once its pre-run checks pass; returns its id and what was checked.
    pub async fn start(
        &self,
        _req: StartRequest,
        _hub: Option<Arc<Hub>>,
    ) -> Result<(String, Checked), ExperimentError> {
        Err(ExperimentError::Host(anyhow::anyhow!("not yet")))
    }

    /// Renews a running experiment's lease (`by` must act for its team).
    pub fn heartbeat(&self, _id: &str, _by: &Principal) -> Result<(), ExperimentError> {
        Err(ExperimentError::NotFound(String::new()))
    }

    /// Stops a running experiment; returns its record once everything is reverted.
    pub async fn stop(&self, _id: &str, _by: &Principal) -> Result<Record, ExperimentError> {
        Err(ExperimentError::NotFound(String::new()))
    }

    /// Stops every running experiment (an emergency stop, a shutdown) and waits until all are
    /// reverted; new ones are refused with `why` until [`Experiments::accept`].
    pub async fn stop_all(&self, _why: &str) -> usize {
        0
    }

    /// Accepts new runs again (an emergency stop cleared).
    pub fn accept(&self) {}

    /// The newest executions first (running and stored), those `by` may see.
    pub async fn list(
        &self,
        _limit: usize,
        _by: &Principal,
    ) -> Result<Vec<Summary>, ExperimentError> {
        Ok(Vec::new())
    }

    /// One execution's record: live while it runs, else from the history.
    pub async fn get(&self, _id: &str, _by: &Principal) -> Result<Record, ExperimentError> {
        Err(ExperimentError::NotFound(String::new()))
    }

    /// One execution's log lines so far.
    pub async fn log(&self, _id: &str, _by: &Principal) -> Result<Vec<LogEntry>, ExperimentError> {
        Err(ExperimentError::NotFound(String::new()))
    }

    /// The live state of a running execution; `None` once it has ended (read the record then).
    pub fn live(&self, _id: &str, _by: &Principal) -> Result<Option<Live>, ExperimentError> {
        Err(ExperimentError::NotFound(String::new()))
    }
}
