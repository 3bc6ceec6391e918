//! The agent's Prometheus metrics (prometheus-client), served at `/metrics` in the text
//! exposition format.
//!
//! | metric | type | labels | counts |
//! |---|---|---|---|
//! | `faultline_experiments_total` | counter | `end_state` (`COMPLETED`, `CANCELED`, `FAILED`, `ERRORED`) | experiment runs that ended |
//! | `faultline_experiments_running` | gauge | | experiment runs in flight now |
//! | `faultline_faults_injected_total` | counter | | fault targets injected, by experiments and single-fault runs |
//! | `faultline_faults_reverted_total` | counter | | injected targets reverted cleanly |
//! | `faultline_revert_failures_total` | counter | | targets whose revert failed (the journal keeps them) |
//! | `faultline_probe_checks_total` | counter | `verdict` (`passed`, `failed`, `not-applicable`) | probe checks of ended experiments |
//! | `faultline_hub_syncs_total` | counter | `result` (`ok`, `failed`) | hub syncs |
//! | `faultline_component_load_seconds` | histogram | `kind` (`fault`, `probe`) | loading and checking one component |
//! | `faultline_revert_seconds` | histogram | | one target's revert |
//! | `faultline_runs_total` | counter | `status` (as `GET /v1/runs` says it: `completed`, `stopped`, ...) | single-fault runs that ended |
//! | `faultline_emergency_stop` | gauge | | 1 while an emergency stop is active, else 0 |
//!
//! An experiment's counts are taken from its final [`Record`] once it ends; a run still going
//! shows only in `faultline_experiments_running`. Every method is cheap and lock-free apart
//! from the encoding, and never blocks on I/O.

use super::run::RunView;
use crate::experiment::record::{REVERT_FAILED, Record};
use crate::host::Verdict;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndStateLabel {
    end_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// Loads take from a millisecond (cached, small) to a minute (a cold compile): ×4 buckets.
fn load_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 9))
}

/// Reverts take from half a millisecond (a signal) to tens of seconds (a stuck call): ×4.
fn revert_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}

/// Every metric the agent keeps.
pub struct Metrics {
    registry: Registry,
    experiments: Family<EndStateLabel, Counter>,
    running: Gauge,
    injected: Counter,
    reverted: Counter,
    revert_failures: Counter,
    probe_checks: Family<VerdictLabel, Counter>,
    hub_syncs: Family<ResultLabel, Counter>,
    component_load: Family<KindLabel, Histogram, fn() -> Histogram>,
    revert_seconds: Histogram,
    runs: Family<StatusLabel, Counter>,
    emergency_stop: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            experiments: Family::default(),
            running: Gauge::default(),
            injected: Counter::default(),
            reverted: Counter::default(),
            revert_failures: Counter::default(),
            probe_checks: Family::default(),
            hub_syncs: Family::default(),
            component_load: Family::new_with_constructor(load_buckets),
            revert_seconds: revert_buckets(),
            runs: Family::default(),
            emergency_stop: Gauge::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "faultline_experiments",
            "Experiment runs that ended, by end state",
            m.experiments.clone(),
        );
        registry.register(
            "faultline_experiments_running",
            "Experiment runs in flight",
            m.running.clone(),
        );
        registry.register(
            "faultline_faults_injected",
            "Fault targets injected",
            m.injected.clone(),
        );
        registry.register(
            "faultline_faults_reverted",
            "Injected fault targets reverted cleanly",
            m.reverted.clone(),
        );
        registry.register(
            "faultline_revert_failures",
            "Fault targets whose revert failed (the journal keeps them for recovery)",
            m.revert_failures.clone(),
        );
        registry.register(
            "faultline_probe_checks",
            "Probe checks of ended experiments, by verdict",
            m.probe_checks.clone(),
        );
        registry.register(
            "faultline_hub_syncs",
            "Hub syncs, by result",
            m.hub_syncs.clone(),
        );
        registry.register(
            "faultline_component_load_seconds",
            "Seconds to load and check one component, by kind",
            m.component_load.clone(),
        );
        registry.register(
            "faultline_revert_seconds",
            "Seconds one fault target's revert took",
            m.revert_seconds.clone(),
        );
        registry.register(
            "faultline_runs",
            "Single-fault runs that ended, by status",
            m.runs.clone(),
        );
        registry.register(
            "faultline_emergency_stop",
            "1 while an emergency stop is active",
            m.emergency_stop.clone(),
        );
        Metrics { registry, ..m }
    }

    /// An experiment run ended: its end state, faults injected and reverted, revert failures,
    /// probe results and revert times.
    pub fn experiment_ended(&self, record: &Record) {
        let end_state = record.end_state.map_or("ERRORED", |e| e.as_str());
        self.experiments
            .get_or_create(&EndStateLabel {
                end_state: end_state.to_string(),
            })
            .inc();
        for target in record.faults.iter().flat_map(|f| &f.targets) {
            let failed = target
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(REVERT_FAILED));
            if failed {
                self.revert_failures.inc();
            }
            if target.injected_ms.is_some() {
                self.injected.inc();
                if !failed && target.reverted_ms.is_some() {
                    self.reverted.inc();
                }
            }
            if let Some(ms) = target.revert_ms {
                self.revert_seconds.observe(ms / 1000.0);
            }
        }
        for probe in &record.probes {
            for (verdict, n) in [
                (Verdict::Passed, probe.tally.passed),
                (Verdict::Failed, probe.tally.failed),
                (Verdict::NotApplicable, probe.tally.not_applicable),
            ] {
                if n > 0 {
                    self.probe_checks
                        .get_or_create(&VerdictLabel {
                            verdict: verdict.as_str().to_string(),
                        })
                        .inc_by(n);
                }
            }
        }
    }

    /// How many experiment runs are in flight now.
    pub fn set_experiments_running(&self, n: usize) {
        self.running.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A single-fault run (`/v1/runs`) ended.
    pub fn run_ended(&self, view: &RunView) {
        let status = serde_json::to_value(view.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        self.runs.get_or_create(&StatusLabel { status }).inc();
        let failed = !view.revert_failures.is_empty();
        if failed {
            self.revert_failures.inc();
        }
        // A revert that ran means inject got as far as changing something.
        if let Some(ms) = view.revert_ms.filter(|ms| *ms > 0.0) {
            self.injected.inc();
            if !failed {
                self.reverted.inc();
            }
            self.revert_seconds.observe(ms / 1000.0);
        }
    }

    /// A component was loaded (compiled or from the cache) and checked, in `seconds`.
    pub fn component_loaded(&self, kind: &str, seconds: f64) {
        self.component_load
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// A hub sync ended.
    pub fn hub_synced(&self, ok: bool) {
        self.hub_syncs
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// Whether an emergency stop is active now.
    pub fn set_emergency_stop(&self, active: bool) {
        self.emergency_stop.set(i64::from(active));
    }

    /// The text exposition format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an error would only leave the text short.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("encoding the metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_metric_is_in_the_exposition() {
        let m = Metrics::new();
        m.hub_synced(true);
        m.hub_synced(false);
        m.hub_synced(true);
        m.component_loaded("fault", 0.002);
        m.set_emergency_stop(true);
        m.set_experiments_running(3);
        let text = m.encode();
        for line in [
            "faultline_hub_syncs_total{result=\"ok\"} 2",
            "faultline_hub_syncs_total{result=\"failed\"} 1",
            "faultline_component_load_seconds_count{kind=\"fault\"} 1",
            "faultline_emergency_stop 1",
            "faultline_experiments_running 3",
            "faultline_faults_injected_total 0",
            "faultline_faults_reverted_total 0",
            "faultline_revert_failures_total 0",
            "faultline_revert_seconds_count 0",
            "# TYPE faultline_experiments counter",
            "# TYPE faultline_probe_checks counter",
            "# TYPE faultline_runs counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        m.set_emergency_stop(false);
        assert!(
            m.encode()
                .lines()
                .any(|l| l == "faultline_emergency_stop 0")
        );
    }
}
