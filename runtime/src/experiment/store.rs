//! The history: every run's [`Record`] and log in one SQLite file.

use super::record::{LogEntry, Record, Status};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where the history lives in a state directory.
pub fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.sqlite")
}

/// One line of `faultline executions list`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// The id.
    pub id: String,
    /// The experiment's name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// Its end state, once final (`COMPLETED`, …).
    pub end_state: Option<String>,
    /// The resilience score.
    pub score: Option<f64>,
    /// Started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Ended.
    pub ended_ms: Option<u64>,
}

/// The history file. Cheap to clone; every call opens its own connection (callers run them
/// on the blocking pool).
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// Opens (creating and migrating) the history at `path`, and closes as errored every run
    /// still `running` whose process is gone.
    pub fn open(path: &Path) -> Result<Store> {
        let _ = path;
        todo!("Store::open")
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces a run's record.
    pub fn save(&self, record: &Record) -> Result<()> {
        let _ = record;
        todo!("Store::save")
    }

    /// Appends lines to a run's log.
    pub fn append_log(&self, id: &str, entries: &[LogEntry]) -> Result<()> {
        let _ = (id, entries);
        todo!("Store::append_log")
    }

    /// The newest `limit` runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<Summary>> {
        let _ = limit;
        todo!("Store::list")
    }

    /// One run's record.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        let _ = id;
        todo!("Store::get")
    }

    /// One run's log, in order.
    pub fn log(&self, id: &str) -> Result<Vec<LogEntry>> {
        let _ = id;
        todo!("Store::log")
    }
}
