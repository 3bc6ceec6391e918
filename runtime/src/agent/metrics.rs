//! The agent's Prometheus metrics (prometheus-client), served at `/metrics`.
//!
//! STUB (owner: experiments helper): the methods are the contract; their bodies are to be
//! written on prometheus-client.

use crate::experiment::record::Record;

/// Every metric the agent keeps.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics {}
    }

    /// An experiment run ended: its end state, faults injected and reverted, revert failures,
    /// probe results and revert times.
    pub fn experiment_ended(&self, _record: &Record) {}

    /// A single-fault run (`/v1/runs`) ended.
    pub fn run_ended(&self, _view: &super::run::RunView) {}

    /// A component was loaded (compiled or from the cache) and checked, in `seconds`.
    pub fn component_loaded(&self, _kind: &str, _seconds: f64) {}

    /// A hub sync ended.
    pub fn hub_synced(&self, _ok: bool) {}

    /// The text exposition format.
    pub fn encode(&self) -> String {
        String::new()
    }
}
