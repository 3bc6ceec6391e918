//! Reports of a run: a JSON journal ([`json`]), JUnit XML for CI gates ([`junit`]), a
//! self-contained HTML page with the timeline ([`html`]).
//!
//! Names, messages and outputs in a [`Record`](super::record::Record) are user and guest
//! text: the XML and HTML reports escape every one of them, replace what XML 1.0 forbids, and
//! bound each in length (the JSON journal keeps them whole). Rendering is pure string work on
//! a record in memory (no I/O), so it may run on the async runtime.
//!
//! ```
//! use faultline::experiment::record::{Record, Status};
//! use faultline::experiment::report;
//!
//! let record = Record {
//!     id: "01JDZ8X3V9Q6Y2K7M4N5P8R0ST".into(),
//!     name: "checkout <survives> a lost replica".into(),
//!     description: String::new(),
//!     tags: vec![],
//!     team: None,
//!     started_by: None,
//!     file: "checkout.yaml".into(),
//!     file_digest: "sha256:00".into(),
//!     status: Status::Error,
//!     end_state: None,
//!     reason: None,
//!     score: None,
//!     started_ms: 1_796_132_718_000,
//!     ended_ms: Some(1_796_132_728_000),
//!     owner_pid: 1,
//!     owner_start: 1,
//!     boot_id: "boot".into(),
//!     faults: vec![],
//!     probes: vec![],
//!     activities: vec![],
//! };
//! assert_eq!(report::json(&record, &[])["duration_ms"], 10_000);
//! assert!(report::junit(&record).contains(r#"name="checkout &lt;survives&gt; a lost replica""#));
//! assert!(report::html(&record, &[]).contains("<svg id=\"timeline\""));
//! ```

mod escape;
mod html;
mod json;
mod junit;
mod time;
mod timeline;

pub use html::html;
pub use json::{JOURNAL_VERSION, json};
pub use junit::junit;

/// Characters of a name (of an experiment, step, lane, probe, target) the XML and HTML show.
const MAX_NAME: usize = 256;
/// Characters of a message or an output the XML and HTML show.
const MAX_MESSAGE: usize = 4096;
/// Items of a list (targets, checks, tags) the XML and HTML show per entry.
const MAX_LISTED: usize = 500;

#[cfg(test)]
mod tests {
    use super::super::record::{
        Activity, Check, FaultRecord, FaultStatus, LogEntry, Moment, ProbeRecord, Record, Source,
        Status, TargetRun,
    };
    use super::*;
    use crate::host::Verdict;

    fn check(at_ms: u64, verdict: Verdict) -> Check {
        Check {
            at_ms,
            moment: Moment::During,
            verdict,
            message: String::new(),
            value: Some(f64::NAN),
            elapsed_ms: f64::INFINITY,
            attempts: u32::MAX,
        }
    }

    /// A record whose times are out of order and out of range and whose numbers are not
    /// finite: what a corrupt history row or a buggy engine could hand over.
    fn broken() -> Record {
        Record {
            id: String::new(),
            name: String::new(),
            description: String::new(),
            tags: vec![],
            team: None,
            started_by: None,
            file: String::new(),
            file_digest: String::new(),
            status: Status::Running,
            end_state: None,
            reason: None,
            score: Some(f64::NAN),
            started_ms: u64::MAX - 5,
            ended_ms: Some(0),
            owner_pid: 0,
            owner_start: 0,
            boot_id: String::new(),
            faults: vec![FaultRecord {
                name: "f".into(),
                lane: "l".into(),
                reference: String::new(),
                resolved: None,
                weight: 10,
                duration_ms: u64::MAX,
                status: FaultStatus::Running,
                message: None,
                targets: vec![TargetRun {
                    target: String::new(),
                    params: serde_json::Value::Null,
                    execution: None,
                    grant: None,
                    reason: None,
                    error: None,
                    injected_ms: Some(u64::MAX),
                    reverted_ms: Some(0),
                    revert_ms: None,
                }],
                probe_success: Some(f64::INFINITY),
                started_ms: Some(u64::MAX),
                ended_ms: None,
            }],
            probes: vec![ProbeRecord {
                name: "p".into(),
                reference: String::new(),
                resolved: None,
                mode: None,
                faults: vec!["f".into()],
                tally: Default::default(),
                checks: vec![check(0, Verdict::Failed), check(u64::MAX, Verdict::Passed)],
                success_rate: Some(f64::NEG_INFINITY),
                verdict: None,
            }],
            activities: vec![Activity {
                kind: "\"><x".into(),
                name: String::new(),
                lane: "l".into(),
                started_ms: Some(u64::MAX),
                ended_ms: Some(1),
                status: "\" onclick=\"x".into(),
                output: String::new(),
            }],
        }
    }

    #[test]
    fn broken_times_and_numbers_render_without_panicking() {
        let record = broken();
        let log = [LogEntry {
            at_ms: 0,
            source: Source::Host,
            level: "\"><".into(),
            step: None,
            message: String::new(),
        }];
        let page = html(&record, &log);
        let xml = junit(&record);
        let journal = json(&record, &log);
        for text in [&page, &xml] {
            assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
            assert!(!text.contains("onclick=\"") && !text.contains("<x"));
        }
        assert!(xml.contains(r#"<error type="running""#), "{xml}");
        // Every drawn x stays inside the picture.
        for x in page
            .split(" x=\"")
            .skip(1)
            .chain(page.split(" cx=\"").skip(1))
        {
            let x: i64 = x[..x.find('"').unwrap()].parse().unwrap();
            assert!((0..=1100).contains(&x), "x {x}");
        }
        assert_eq!(
            journal["steady_states"]["during"].as_array().unwrap().len(),
            2
        );
        assert!(journal.get("duration_ms").is_some());
    }

    #[test]
    fn many_checks_draw_every_failure_and_passes_across_the_run() {
        let mut record = broken();
        record.started_ms = 0;
        record.ended_ms = Some(100_000);
        record.probes[0].checks = (0..10_000u64)
            .map(|i| {
                let verdict = if i % 100 == 0 {
                    Verdict::Failed
                } else {
                    Verdict::Passed
                };
                check(i * 10, verdict)
            })
            .collect();
        let page = html(&record, &[]);
        let marks = page.matches("<circle class=\"mark ").count();
        assert!((1500..=2000).contains(&marks), "{marks}");
        assert_eq!(page.matches("<circle class=\"mark failed\"").count(), 100);
        // The passes drawn span the run, not only its first 2000 checks.
        let last = page
            .split("id=\"check-0-")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse::<usize>().unwrap())
            .max()
            .unwrap();
        assert!(last >= 9900, "{last}");
    }
}
