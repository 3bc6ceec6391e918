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

use super::record::Moment;
use super::spec::ProbeMode;

/// Characters of a name (of an experiment, step, lane, probe, target) the XML and HTML show.
const MAX_NAME: usize = 256;
/// Characters of a message or an output the XML and HTML show.
const MAX_MESSAGE: usize = 4096;
/// Items of a list (targets, checks, tags) the XML and HTML show per entry.
const MAX_LISTED: usize = 500;

/// The file's word for a probe mode.
fn mode_word(mode: ProbeMode) -> &'static str {
    match mode {
        ProbeMode::StartOfTest => "start-of-test",
        ProbeMode::EndOfTest => "end-of-test",
        ProbeMode::Edge => "edge",
        ProbeMode::Continuous => "continuous",
        ProbeMode::OnChaos => "on-chaos",
    }
}

/// The journal's word for a moment.
fn moment_word(moment: Moment) -> &'static str {
    match moment {
        Moment::Before => "before",
        Moment::During => "during",
        Moment::After => "after",
    }
}
