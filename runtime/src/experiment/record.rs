//! What a run of an experiment leaves: one [`Record`] (stored in the history, printed by
//! `--json`, rendered as JUnit and HTML) and its log ([`LogEntry`]s).
//!
//! Status rules (see [`FaultStatus::judge`] and [`Status::of`]):
//!
//! | fault | when |
//! |---|---|
//! | `completed` | every probe that judges it passed (and there is at least one) |
//! | `completed-with-error` | at least one of them failed, none was not applicable |
//! | `error` | at least one was not applicable, or none judges it, or inject/revert failed |
//! | `stopped` | the run was stopped while it was injected |
//! | `skipped` | it never ran: the run ended first, or its targets were empty with `on_empty: skip` |

use super::spec::ProbeMode;
use crate::host::Verdict;
use serde::{Deserialize, Serialize};

/// The status of one fault step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultStatus {
    /// Not started yet.
    Pending,
    /// Injected now.
    Running,
    /// The run was stopped while it ran.
    Stopped,
    /// It never ran.
    Skipped,
    /// Every probe judging it passed.
    Completed,
    /// A probe judging it failed; none was not applicable.
    CompletedWithError,
    /// A probe judging it was not applicable, none judges it, or it failed to run.
    Error,
}

impl FaultStatus {
    /// The status of a fault that ran to its end, from the verdicts of the probes that judge
    /// it: the rules of the module's table.
    pub fn judge(verdicts: &[Verdict]) -> FaultStatus {
        if verdicts.is_empty() || verdicts.contains(&Verdict::NotApplicable) {
            FaultStatus::Error
        } else if verdicts.contains(&Verdict::Failed) {
            FaultStatus::CompletedWithError
        } else {
            FaultStatus::Completed
        }
    }

    /// The word used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultStatus::Pending => "pending",
            FaultStatus::Running => "running",
            FaultStatus::Stopped => "stopped",
            FaultStatus::Skipped => "skipped",
            FaultStatus::Completed => "completed",
            FaultStatus::CompletedWithError => "completed-with-error",
            FaultStatus::Error => "error",
        }
    }
}

/// The status of an experiment run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Accepted, not started.
    Queued,
    /// Running now.
    Running,
    /// Every fault completed.
    Completed,
    /// A probe failed; nothing was not applicable.
    CompletedWithError,
    /// A probe was not applicable, a fault failed to run, or the run died (a crash).
    Error,
    /// The experiment's `timeout` passed.
    Timeout,
    /// Stopped: by a person, a signal, or a stop-on-failure probe.
    Stopped,
}

impl Status {
    /// The word used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::CompletedWithError => "completed-with-error",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Stopped => "stopped",
        }
    }

    /// Parses [`Status::as_str`].
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::Running,
            Status::Completed,
            Status::CompletedWithError,
            Status::Error,
            Status::Timeout,
            Status::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The status of a run that was not stopped and did not time out, from its faults' and
    /// probes' outcomes: error beats completed-with-error beats completed.
    pub fn of(faults: &[FaultStatus], probes: &[Verdict]) -> Status {
        let error =
            faults.contains(&FaultStatus::Error) || probes.contains(&Verdict::NotApplicable);
        if error || (faults.is_empty() && probes.is_empty()) {
            Status::Error
        } else if faults.contains(&FaultStatus::CompletedWithError)
            || probes.contains(&Verdict::Failed)
        {
            Status::CompletedWithError
        } else {
            Status::Completed
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// The end state in the vocabulary of the other tools (Steadybit, Harness): what a pipeline
/// gates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndState {
    /// Every check passed.
    Completed,
    /// Stopped by a person or a signal.
    Canceled,
    /// The system failed a check.
    Failed,
    /// The run could not judge the system: errors, timeouts, crashes.
    Errored,
}

impl EndState {
    /// The end state of a final status; `stopped_by_probe` when a stop-on-failure probe
    /// stopped it (the system failed, nobody canceled).
    pub fn of(status: Status, stopped_by_probe: bool) -> Option<EndState> {
        Some(match status {
            Status::Queued | Status::Running => return None,
            Status::Completed => EndState::Completed,
            Status::CompletedWithError => EndState::Failed,
            Status::Stopped if stopped_by_probe => EndState::Failed,
            Status::Stopped => EndState::Canceled,
            Status::Error | Status::Timeout => EndState::Errored,
        })
    }

    /// The word used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Completed => "COMPLETED",
            EndState::Canceled => "CANCELED",
            EndState::Failed => "FAILED",
            EndState::Errored => "ERRORED",
        }
    }
}

/// Where in the run a probe check happened: the steady state before, during, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Moment {
    /// Before any fault.
    Before,
    /// While the lanes ran.
    During,
    /// After every fault was reverted.
    After,
}

impl Moment {
    /// The journal's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Moment::Before => "before",
            Moment::During => "during",
            Moment::After => "after",
        }
    }
}

/// One check of a probe (one or more attempts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Before, during or after.
    pub moment: Moment,
    /// Its verdict.
    pub verdict: Verdict,
    /// What the probe said (of the last attempt).
    pub message: String,
    /// The value it measured, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// How long all attempts took, in milliseconds.
    pub elapsed_ms: f64,
    /// Attempts it took.
    pub attempts: u32,
}

/// Checks a probe record keeps in full; past them only checks that did not pass are kept (as
/// many again), so a probe every 50 ms for days cannot grow the record without bound.
pub const KEPT_CHECKS: usize = 2000;

/// A probe's checks counted by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Checks that passed.
    pub passed: u64,
    /// Checks the system failed.
    pub failed: u64,
    /// Checks that could not run.
    pub not_applicable: u64,
}

impl Tally {
    /// Counts one check.
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::NotApplicable => self.not_applicable += 1,
        }
    }

    /// Every check counted.
    pub fn total(&self) -> u64 {
        self.passed + self.failed + self.not_applicable
    }
}

impl ProbeRecord {
    /// Records a check: counted always, kept while within [`KEPT_CHECKS`] (or, past them, when
    /// it did not pass, up to as many again).
    pub fn record(&mut self, check: Check) {
        self.tally.add(check.verdict);
        let kept = self.checks.len();
        if kept < KEPT_CHECKS || (check.verdict != Verdict::Passed && kept < 2 * KEPT_CHECKS) {
            self.checks.push(check);
        }
    }
}

/// One probe of the run and its checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The probe's name in the file, or the step's name for a probe action.
    pub name: String,
    /// The reference in the file.
    pub reference: String,
    /// `name@version` it resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// When it runs; `None` for a probe action (a step of a lane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProbeMode>,
    /// The fault steps it judges.
    pub faults: Vec<String>,
    /// Its checks, in order: the first [`KEPT_CHECKS`], then only those that did not pass
    /// (up to as many again); `tally` counts them all.
    pub checks: Vec<Check>,
    /// Every check counted by verdict, also those not kept in `checks`.
    #[serde(default)]
    pub tally: Tally,
    /// Continuous and on-chaos: the percentage of checks that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// The verdict over all checks; `None` while running or when it never checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// One resolved target of a fault step and its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRun {
    /// What it is, for people: `pid 4242 (demo-service)`, `cgroup /x`, `netns a: veth0`.
    pub target: String,
    /// The parameters the fault ran with (the step's, plus the target's).
    pub params: serde_json::Value,
    /// The execution id of this run (the journal's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// The grant that covers it (from the pre-run check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Why the run ended (`duration over`, `stopped on request`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An error of inject, a tick or the revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When `inject` returned, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_ms: Option<u64>,
    /// When the revert ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_ms: Option<u64>,
    /// How long the revert took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_ms: Option<f64>,
}

/// One fault step of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The step's name.
    pub name: String,
    /// Its lane's name.
    pub lane: String,
    /// The reference in the file.
    pub reference: String,
    /// `name@version` it resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Its weight, 0 to 10.
    pub weight: u8,
    /// How long it is held.
    pub duration_ms: u64,
    /// Its status.
    pub status: FaultStatus,
    /// Why, when it did not simply complete (skipped because…, error because…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Its resolved targets, each with its run.
    pub targets: Vec<TargetRun>,
    /// The percentage of the probes judging it that passed; `None` when none judged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_success: Option<f64>,
    /// When it started and ended, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// See `started_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
}

/// One step of a lane as it ran (faults, waits and probe actions alike): the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// `fault`, `wait` or `probe`.
    pub kind: String,
    /// The step's name.
    pub name: String,
    /// Its lane.
    pub lane: String,
    /// When it started, in milliseconds since the Unix epoch; `None` when it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// `completed`, `skipped`, `stopped`, `error`, or a fault's status.
    pub status: String,
    /// What it produced, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// A run of an experiment: what the history keeps and the reports show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// A sortable unique id (a ULID).
    pub id: String,
    /// The experiment's name.
    pub name: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The team that owns it (the file's `team:`), if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Who started it on an agent (the token's name); `None` for `faultline run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The file it was read from, as given.
    pub file: String,
    /// The file's `sha256:` digest.
    pub file_digest: String,
    /// Its status.
    pub status: Status,
    /// Its end state, once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_state: Option<EndState>,
    /// Why it ended as it did, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Σ(weight × probe success %) / Σ weight over the faults that ran; `None` when no fault
    /// with weight was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The process that ran it (so a crashed run can be told from a live one).
    pub owner_pid: u32,
    /// That process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub owner_start: u64,
    /// The boot it ran in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Every fault step.
    pub faults: Vec<FaultRecord>,
    /// Every probe (experiment probes and probe actions).
    pub probes: Vec<ProbeRecord>,
    /// Every step of every lane, in lane order.
    pub activities: Vec<Activity>,
}

/// How a target's `error` begins when its revert failed (the host may still be changed).
pub const REVERT_FAILED: &str = "revert failed";

impl Record {
    /// Whether a revert failed: the host may still be changed, the journal keeps what is left.
    pub fn host_changed(&self) -> bool {
        self.faults.iter().flat_map(|f| &f.targets).any(|t| {
            t.error
                .as_deref()
                .is_some_and(|e| e.starts_with(REVERT_FAILED))
        })
    }

    /// Closes a run that can no longer end by itself (its process or its task is gone) as
    /// `error`/`ERRORED` with `reason`: faults still injected errored too (the journal reverts
    /// them), those that never started were skipped.
    pub fn close_abandoned(&mut self, now_ms: u64, reason: &str) {
        self.status = Status::Error;
        self.end_state = Some(EndState::Errored);
        self.ended_ms = Some(now_ms);
        self.reason = Some(reason.to_string());
        for fault in &mut self.faults {
            match fault.status {
                FaultStatus::Running => {
                    fault.status = FaultStatus::Error;
                    fault.message = Some("the run ended while it was injected".into());
                    fault.ended_ms.get_or_insert(now_ms);
                }
                FaultStatus::Pending => {
                    fault.status = FaultStatus::Skipped;
                    fault.message = Some("the run ended before it started".into());
                }
                _ => {}
            }
        }
    }

    /// Σ(weight × probe success %) / Σ weight, in real numbers, over the faults that have a
    /// probe success percentage and a weight above zero; `None` when there is none.
    pub fn score_of(faults: &[FaultRecord]) -> Option<f64> {
        let judged: Vec<(f64, f64)> = faults
            .iter()
            .filter_map(|f| f.probe_success.map(|p| (f64::from(f.weight), p)))
            .collect();
        let total: f64 = judged.iter().map(|(w, _)| w).sum();
        if total == 0.0 {
            return None;
        }
        Some(judged.iter().map(|(w, p)| w * p).sum::<f64>() / total)
    }
}

/// Who wrote a line of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The experiment engine (steps starting and ending, statuses).
    Engine,
    /// The host (injects, reverts, denials).
    Host,
    /// A fault's or probe's own `log` line.
    Guest,
    /// A probe's result.
    Probe,
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who wrote it.
    pub source: Source,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The step or probe it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The line.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Failed as F, NotApplicable as N, Passed as P};

    #[test]
    fn a_fault_status_follows_the_rules_table() {
        let table: &[(&[Verdict], FaultStatus)] = &[
            (&[], FaultStatus::Error),
            (&[P], FaultStatus::Completed),
            (&[P, P, P], FaultStatus::Completed),
            (&[F], FaultStatus::CompletedWithError),
            (&[P, F], FaultStatus::CompletedWithError),
            (&[N], FaultStatus::Error),
            (&[P, N], FaultStatus::Error),
            (&[F, N], FaultStatus::Error),
            (&[P, F, N], FaultStatus::Error),
        ];
        for (verdicts, want) in table {
            assert_eq!(FaultStatus::judge(verdicts), *want, "{verdicts:?}");
        }
    }

    #[test]
    fn an_experiment_status_and_end_state_follow_the_rules_table() {
        use FaultStatus::{Completed as C, CompletedWithError as CE, Error as E};
        let table: &[(&[FaultStatus], &[Verdict], Status)] = &[
            (&[], &[], Status::Error),
            (&[C], &[P], Status::Completed),
            (&[C, C], &[], Status::Completed),
            (&[], &[P], Status::Completed),
            (&[C, CE], &[P, F], Status::CompletedWithError),
            (&[], &[F], Status::CompletedWithError),
            (&[C, E], &[P], Status::Error),
            (&[CE, E], &[F], Status::Error),
            (&[C], &[N], Status::Error),
        ];
        for (faults, probes, want) in table {
            assert_eq!(Status::of(faults, probes), *want, "{faults:?} {probes:?}");
        }
        let ends = [
            (Status::Completed, false, Some(EndState::Completed)),
            (Status::CompletedWithError, false, Some(EndState::Failed)),
            (Status::Error, false, Some(EndState::Errored)),
            (Status::Timeout, false, Some(EndState::Errored)),
            (Status::Stopped, false, Some(EndState::Canceled)),
            (Status::Stopped, true, Some(EndState::Failed)),
            (Status::Running, false, None),
            (Status::Queued, false, None),
        ];
        for (status, by_probe, want) in ends {
            assert_eq!(
                EndState::of(status, by_probe),
                want,
                "{status:?} {by_probe}"
            );
        }
        for s in [Status::Queued, Status::CompletedWithError, Status::Timeout] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    fn fault(weight: u8, probe_success: Option<f64>) -> FaultRecord {
        FaultRecord {
            name: "f".into(),
            lane: "l".into(),
            reference: "r".into(),
            resolved: None,
            weight,
            duration_ms: 0,
            status: FaultStatus::Completed,
            message: None,
            targets: Vec::new(),
            probe_success,
            started_ms: None,
            ended_ms: None,
        }
    }

    #[test]
    fn the_score_is_the_weighted_mean_of_probe_success_in_real_numbers() {
        // (10 × 100 + 5 × 50) / 15 = 83.33…, not the 83 integer division gives.
        let faults = [fault(10, Some(100.0)), fault(5, Some(50.0))];
        let score = Record::score_of(&faults).unwrap();
        assert!((score - 1250.0 / 15.0).abs() < 1e-9, "{score}");
        // Weight 0 counts for nothing; an unjudged fault is left out; 1/3 stays a third.
        let faults = [
            fault(0, Some(0.0)),
            fault(3, Some(100.0 / 3.0)),
            fault(10, None),
        ];
        let score = Record::score_of(&faults).unwrap();
        assert!((score - 100.0 / 3.0).abs() < 1e-9, "{score}");
        assert_eq!(Record::score_of(&[fault(0, Some(100.0))]), None);
        assert_eq!(Record::score_of(&[]), None);
    }
}
