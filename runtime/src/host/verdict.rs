//! What a probe's check comes to: it passed, the system failed it, or the probe could not run.
//!
//! Experiments score the three differently: a failed check counts against the system, a check
//! that could not run (denied, invalid parameters, a program missing, a trap, its deadline, its
//! memory cap) says nothing about the system and counts as not applicable.

use super::{CallError, Outcome};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// `check` returned an outcome with `ok: true`.
    Passed,
    /// `check` returned an outcome with `ok: false`: the system answered wrong, refused or
    /// timed out.
    Failed,
    /// The probe could not run: `check` returned the contract's error (denied, invalid,
    /// unsupported, target gone, failed), trapped, ran past its deadline or its memory cap, or
    /// the host failed.
    NotApplicable,
}

impl Verdict {
    /// The verdict of what `check` returned.
    pub fn of(result: &Result<Outcome, CallError>) -> Verdict {
        match result {
            Ok(o) if o.ok => Verdict::Passed,
            Ok(_) => Verdict::Failed,
            Err(_) => Verdict::NotApplicable,
        }
    }

    /// `passed`, `failed` or `not-applicable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotApplicable => "not-applicable",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe could not run, for records and JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    /// The export that failed (`check`).
    pub phase: &'static str,
    /// `denied`, `invalid`, `unsupported`, `target-gone`, `failed` (the contract's error),
    /// `trapped`, `deadline`, `memory-limit`, `state-too-large` or `host-error`.
    pub kind: &'static str,
    /// The whole message.
    pub reason: String,
}

impl From<&CallError> for NotRun {
    fn from(e: &CallError) -> NotRun {
        let (phase, kind) = match e {
            CallError::Guest { phase, error } => (*phase, error.kind),
            CallError::Trap { phase, .. } => (*phase, "trapped"),
            CallError::Deadline { phase, .. } => (*phase, "deadline"),
            CallError::MemoryLimit { phase, .. } => (*phase, "memory-limit"),
            CallError::Host { phase, .. } => (*phase, "host-error"),
            CallError::StateTooLarge { phase, .. } => (*phase, "state-too-large"),
        };
        NotRun {
            phase,
            kind,
            reason: e.to_string(),
        }
    }
}

/// One check, judged: what experiments record and `faultline probe` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The verdict.
    pub verdict: Verdict,
    /// What the probe saw (its outcome's message), or why it could not run.
    pub message: String,
    /// The value it measured, if any.
    pub value: Option<f64>,
    /// Wall time of the check, in milliseconds.
    pub elapsed_ms: f64,
    /// Why it could not run, for [`Verdict::NotApplicable`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<NotRun>,
}

impl Checked {
    /// Judges what `check` returned, which took `elapsed_ms`.
    pub fn new(result: &Result<Outcome, CallError>, elapsed_ms: f64) -> Checked {
        let verdict = Verdict::of(result);
        match result {
            Ok(o) => Checked {
                verdict,
                message: o.message.clone(),
                value: o.value,
                elapsed_ms,
                not_run: None,
            },
            Err(e) => Checked {
                verdict,
                message: e.to_string(),
                value: None,
                elapsed_ms,
                not_run: Some(NotRun::from(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::GuestErrorText;
    use std::time::Duration;

    fn outcome(ok: bool) -> Result<Outcome, CallError> {
        Ok(Outcome {
            ok,
            message: "seen".into(),
            value: Some(1.5),
        })
    }

    #[test]
    fn outcomes_pass_or_fail_and_errors_are_not_applicable() {
        assert_eq!(Verdict::of(&outcome(true)), Verdict::Passed);
        assert_eq!(Verdict::of(&outcome(false)), Verdict::Failed);
        let errors = [
            (
                CallError::Guest {
                    phase: "check",
                    error: GuestErrorText {
                        kind: "denied",
                        reason: "no".into(),
                    },
                },
                "denied",
            ),
            (
                CallError::Trap {
                    phase: "check",
                    message: "panic".into(),
                },
                "trapped",
            ),
            (
                CallError::Deadline {
                    phase: "check",
                    limit: Duration::from_secs(1),
                },
                "deadline",
            ),
            (
                CallError::MemoryLimit {
                    phase: "check",
                    limit: 1,
                    asked: 2,
                },
                "memory-limit",
            ),
            (
                CallError::Host {
                    phase: "check",
                    message: "bug".into(),
                },
                "host-error",
            ),
        ];
        for (e, kind) in errors {
            let r = Err(e);
            assert_eq!(Verdict::of(&r), Verdict::NotApplicable);
            let c = Checked::new(&r, 2.0);
            assert_eq!(c.not_run.as_ref().map(|n| n.kind), Some(kind));
            assert_eq!(c.value, None);
        }
        let json = serde_json::to_value(Checked::new(&outcome(false), 3.0)).unwrap();
        assert_eq!(json["verdict"], "failed");
        assert_eq!(json["value"], 1.5);
        assert!(json.get("not_run").is_none());
        assert_eq!(
            serde_json::to_value(Verdict::NotApplicable).unwrap(),
            "not-applicable"
        );
    }
}
