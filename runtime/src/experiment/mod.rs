//! Experiments: faults and probes on a timeline, with a verdict at the end.
//!
//! ```text
//! file ─► parse (located errors) ─► plan: resolve components, validate params,
//!         resolve targets, check grants, emergency stop ─► run lanes in parallel,
//!         probes by mode ─► statuses, score ─► record (SQLite), reports
//! ```
//!
//! - [`spec`]: the file's types (its JSON Schema is generated from them);
//! - [`parse`]: reading a file, with errors located by line, column and field path;
//! - [`target`]: what a fault step acts on, resolved on this host, and the grant covering it;
//! - [`engine`]: the run itself, through [`crate::execution::Execution`] for every fault;
//! - [`record`]: what a run leaves, with the status rules and the score;
//! - [`store`]: the history, a SQLite file;
//! - [`report`]: JSON, JUnit XML and a self-contained HTML page.

pub mod engine;
pub mod parse;
pub mod record;
pub mod report;
pub mod spec;
pub mod store;
pub mod target;
