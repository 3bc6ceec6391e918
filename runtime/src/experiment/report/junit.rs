//! JUnit XML of a run, for CI gates: one test suite, a test case per fault step and per probe.

use super::super::record::{Check, FaultRecord, FaultStatus, ProbeRecord, Record};
use super::super::spec::ProbeMode;
use super::{MAX_LISTED, MAX_MESSAGE, MAX_NAME, escape, time};
use crate::host::Verdict;
use std::fmt::Write as _;

/// What a test case came to.
enum Outcome {
    Passed,
    /// The system failed a check (`<failure>`).
    Failure(Problem),
    /// The run could not judge it (`<error>`).
    Error(Problem),
    /// It never ran (`<skipped>`).
    Skipped(String),
}

struct Problem {
    /// The `type` attribute: the fault's status or the probe's verdict.
    kind: &'static str,
    message: String,
    detail: String,
}

struct Case {
    classname: String,
    name: String,
    time_ms: f64,
    outcome: Outcome,
    /// `<system-out>`: what happened, for people.
    out: String,
}

/// JUnit XML of a run: `<testsuites>` holding one `<testsuite>` named after the experiment,
/// both with `tests`, `failures`, `errors`, `skipped` counts and `time` in seconds; the suite
/// has a `timestamp` and `<properties>` (id, status, end state, score, reason, file, digest).
///
/// A test case per fault step (`classname` `<experiment>.<lane>`): it passes when
/// `completed`, fails when `completed-with-error`, is an error when `error`, `stopped`
/// (nobody judged it) or not final, skipped when `skipped`. A test case per probe
/// (`classname` `<experiment>.probes`): it passes when its verdict is `passed`, fails when
/// `failed`, is an error when `not-applicable`, skipped when it never checked. Its `time` is
/// the time its checks took; a fault's, from its start to its end.
///
/// Every name and message is escaped, characters XML 1.0 forbids are replaced by U+FFFD, and
/// each is bounded in length.
pub fn junit(record: &Record) -> String {
    let suite = escape::clip(&record.name, MAX_NAME);
    let mut cases: Vec<Case> = record
        .faults
        .iter()
        .map(|f| fault_case(record, &suite, f))
        .collect();
    cases.extend(record.probes.iter().map(|p| probe_case(record, &suite, p)));

    let count = |pred: fn(&Outcome) -> bool| cases.iter().filter(|c| pred(&c.outcome)).count();
    let failures = count(|o| matches!(o, Outcome::Failure(_)));
    let errors = count(|o| matches!(o, Outcome::Error(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let total = record
        .ended_ms
        .map(|end| time::span(record.started_ms, end) as f64)
        .unwrap_or(0.0);
    let counts = format!(
        r#"tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{}""#,
        cases.len(),
        time::seconds(total)
    );

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(xml, r#"<testsuites name="faultline" {counts}>"#);
    let _ = writeln!(
        xml,
        r#"  <testsuite name="{}" id="{}" timestamp="{}" {counts}>"#,
        escape::attr(&suite),
        escape::attr(&escape::clip(&record.id, MAX_NAME)),
        escape::attr(&time::rfc3339(record.started_ms)),
    );
    xml.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            xml,
            r#"      <property name="{name}" value="{}"/>"#,
            escape::attr(&escape::clip(value, MAX_MESSAGE))
        );
    };
    property("id", &record.id);
    property("status", record.status.as_str());
    if let Some(end) = record.end_state {
        property("end-state", end.as_str());
    }
    if let Some(score) = record.score.filter(|s| s.is_finite()) {
        property("score", &format!("{score:.1}"));
    }
    if let Some(reason) = &record.reason {
        property("reason", reason);
    }
    property("file", &record.file);
    property("file-digest", &record.file_digest);
    xml.push_str("    </properties>\n");
    for case in &cases {
        write_case(&mut xml, case);
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

fn write_case(xml: &mut String, case: &Case) {
    let _ = write!(
        xml,
        r#"    <testcase classname="{}" name="{}" time="{}">"#,
        escape::attr(&case.classname),
        escape::attr(&case.name),
        time::seconds(case.time_ms),
    );
    xml.push('\n');
    let problem = |xml: &mut String, tag: &str, p: &Problem| {
        let _ = writeln!(
            xml,
            r#"      <{tag} type="{}" message="{}">{}</{tag}>"#,
            p.kind,
            escape::attr(&escape::clip(&p.message, MAX_MESSAGE)),
            escape::text(&p.detail),
        );
    };
    match &case.outcome {
        Outcome::Passed => {}
        Outcome::Failure(p) => problem(xml, "failure", p),
        Outcome::Error(p) => problem(xml, "error", p),
        Outcome::Skipped(message) => {
            let _ = writeln!(
                xml,
                r#"      <skipped message="{}"/>"#,
                escape::attr(&escape::clip(message, MAX_MESSAGE))
            );
        }
    }
    if !case.out.is_empty() {
        let _ = writeln!(
            xml,
            "      <system-out>{}</system-out>",
            escape::text(&case.out)
        );
    }
    xml.push_str("    </testcase>\n");
}

fn fault_case(record: &Record, suite: &str, fault: &FaultRecord) -> Case {
    let t0 = record.started_ms;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}), weight {}, held {}",
        escape::clip(&fault.reference, MAX_NAME),
        fault.resolved.as_deref().unwrap_or("unresolved"),
        fault.weight,
        time::duration(fault.duration_ms)
    );
    if let Some(p) = fault.probe_success.filter(|p| p.is_finite()) {
        let _ = writeln!(out, "probe success {p:.1}%");
    }
    for (i, t) in fault.targets.iter().enumerate() {
        if i == MAX_LISTED {
            let _ = writeln!(out, "... {} more targets", fault.targets.len() - i);
            break;
        }
        let _ = write!(
            out,
            "target {}: injected {}, reverted {}",
            escape::clip(&t.target, MAX_NAME),
            time::offset(t0, t.injected_ms),
            time::offset(t0, t.reverted_ms),
        );
        if let Some(reason) = &t.reason {
            let _ = write!(out, ", {}", escape::clip(reason, MAX_MESSAGE));
        }
        if let Some(error) = &t.error {
            let _ = write!(out, ", error: {}", escape::clip(error, MAX_MESSAGE));
        }
        out.push('\n');
    }
    let why = |default: &str| fault.message.clone().unwrap_or_else(|| default.to_string());
    let judges: Vec<&ProbeRecord> = record
        .probes
        .iter()
        .filter(|p| p.faults.iter().any(|f| f == &fault.name))
        .collect();
    let problem = |kind, message: String| Problem {
        kind,
        message,
        detail: judges_detail(&judges),
    };
    let outcome = match fault.status {
        FaultStatus::Completed => Outcome::Passed,
        FaultStatus::CompletedWithError => Outcome::Failure(problem(
            "completed-with-error",
            why("a probe judging it failed"),
        )),
        FaultStatus::Error => {
            let target_errors: Vec<&str> = fault
                .targets
                .iter()
                .filter_map(|t| t.error.as_deref())
                .collect();
            let default = if target_errors.is_empty() {
                "a probe judging it was not applicable, or none judges it".to_string()
            } else {
                target_errors.join("; ")
            };
            Outcome::Error(problem("error", why(&default)))
        }
        FaultStatus::Stopped => Outcome::Error(problem(
            "stopped",
            why("the run was stopped while it was injected"),
        )),
        FaultStatus::Pending | FaultStatus::Running => Outcome::Error(problem(
            fault.status.as_str(),
            format!("the run has not judged it: {}", fault.status.as_str()),
        )),
        FaultStatus::Skipped => Outcome::Skipped(why("it never ran")),
    };
    let time_ms = match (fault.started_ms, fault.ended_ms) {
        (Some(s), Some(e)) => time::span(s, e) as f64,
        _ => 0.0,
    };
    Case {
        classname: format!("{suite}.{}", escape::clip(&fault.lane, MAX_NAME)),
        name: escape::clip(&fault.name, MAX_NAME).into_owned(),
        time_ms,
        outcome,
        out,
    }
}

/// The probes that judge a fault and how they did.
fn judges_detail(judges: &[&ProbeRecord]) -> String {
    if judges.is_empty() {
        return "no probe judges this fault".to_string();
    }
    let mut out = String::new();
    for p in judges.iter().take(MAX_LISTED) {
        let _ = write!(
            out,
            "probe {}: {}",
            escape::clip(&p.name, MAX_NAME),
            p.verdict.map_or("never checked", Verdict::as_str)
        );
        if let Some(rate) = p.success_rate.filter(|r| r.is_finite()) {
            let _ = write!(out, ", {rate:.1}% of checks passed");
        }
        out.push('\n');
    }
    out
}

fn probe_case(record: &Record, suite: &str, probe: &ProbeRecord) -> Case {
    let t0 = record.started_ms;
    let bad = |v: Verdict| probe.checks.iter().filter(move |c| c.verdict == v);
    let listing = |v: Verdict| {
        let mut out = String::new();
        for (i, c) in bad(v).enumerate() {
            if i == MAX_LISTED {
                let _ = writeln!(out, "... {} more", bad(v).count() - i);
                break;
            }
            let _ = writeln!(out, "{}", check_line(t0, c));
        }
        out
    };
    let summary = |v: Verdict| {
        let first = bad(v)
            .next()
            .map(|c| {
                format!(
                    "; first at {}: {}",
                    time::offset(t0, Some(c.at_ms)),
                    c.message
                )
            })
            .unwrap_or_default();
        format!(
            "{} of {} checks {}{first}",
            bad(v).count(),
            probe.checks.len(),
            v.as_str()
        )
    };
    let outcome = match probe.verdict {
        Some(Verdict::Passed) => Outcome::Passed,
        Some(Verdict::Failed) => Outcome::Failure(Problem {
            kind: "failed",
            message: summary(Verdict::Failed),
            detail: listing(Verdict::Failed),
        }),
        Some(Verdict::NotApplicable) => Outcome::Error(Problem {
            kind: "not-applicable",
            message: summary(Verdict::NotApplicable),
            detail: listing(Verdict::NotApplicable),
        }),
        None => Outcome::Skipped("it never checked".to_string()),
    };
    let mut out = format!(
        "{} ({}), {}",
        escape::clip(&probe.reference, MAX_NAME),
        probe.resolved.as_deref().unwrap_or("unresolved"),
        probe.mode.map_or("probe action", ProbeMode::as_str)
    );
    if let Some(rate) = probe.success_rate.filter(|r| r.is_finite()) {
        let _ = write!(out, ", {rate:.1}% of checks passed");
    }
    if !probe.faults.is_empty() {
        let _ = write!(out, ", judges {}", probe.faults.join(", "));
    }
    out.push('\n');
    Case {
        classname: format!("{suite}.probes"),
        name: escape::clip(&probe.name, MAX_NAME).into_owned(),
        time_ms: probe
            .checks
            .iter()
            .map(|c| c.elapsed_ms)
            .filter(|e| e.is_finite() && *e > 0.0)
            .sum(),
        outcome,
        out: escape::clip(&out, MAX_MESSAGE).into_owned(),
    }
}

fn check_line(t0: u64, c: &Check) -> String {
    format!(
        "{} ({}, {} attempts): {}",
        time::offset(t0, Some(c.at_ms)),
        c.moment.as_str(),
        c.attempts,
        escape::clip(&c.message, MAX_MESSAGE)
    )
}
