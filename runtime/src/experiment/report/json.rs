//! The JSON journal of a run, in the spirit of Chaos Toolkit's journal.

use super::super::record::{Check, LogEntry, Moment, ProbeRecord, Record};
use super::time;
use serde_json::{Map, Value, json};

/// The version of the journal's layout, `journal_version` in it; raised when a field changes
/// meaning or goes away (new fields do not raise it).
pub const JOURNAL_VERSION: u64 = 1;

/// The JSON journal of a run: the [`Record`] with every field under its own name, and:
///
/// - `journal_version`: [`JOURNAL_VERSION`];
/// - `duration_ms`: `ended_ms - started_ms`, absent while the run has not ended;
/// - `steady_states`: `{ "before": [...], "during": [...], "after": [...] }`, the probe checks
///   grouped by [`Moment`], each in time order, each a [`Check`] (`at_ms`, `verdict`,
///   `message`, `value` when measured, `elapsed_ms`, `attempts`) with `probe` (the probe's
///   name), `reference` and `mode` (absent for a probe action) of its probe, and without
///   `moment` (its group says it);
/// - `activities` (from the record): every lane step, `kind` (`fault`, `wait`, `probe`),
///   `name`, `lane`, `started_ms`, `ended_ms`, `status`, `output`;
/// - `log`: every [`LogEntry`] (`at_ms`, `source`, `level`, `step`, `message`), in order.
///
/// Times are milliseconds since the Unix epoch. The record's own fields are those of its
/// `serde` form (`faults` with their `targets`, `probes` with all their `checks`, `status`,
/// `end_state`, `score`, ...), so a journal reads back into a `Record`.
pub fn json(record: &Record, log: &[LogEntry]) -> Value {
    // A `Record` has string keys and plain values only, so this does not fail; if it ever did,
    // the journal says so rather than pretending to be complete.
    let mut journal = match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => {
            let mut map = Map::new();
            map.insert(
                "error".into(),
                Value::String("the record could not be written as JSON".into()),
            );
            map
        }
    };
    journal.insert("journal_version".into(), json!(JOURNAL_VERSION));
    if let Some(ended) = record.ended_ms {
        journal.insert(
            "duration_ms".into(),
            json!(time::span(record.started_ms, ended)),
        );
    }
    journal.insert("steady_states".into(), steady_states(&record.probes));
    journal.insert(
        "log".into(),
        serde_json::to_value(log).unwrap_or_else(|_| Value::Array(Vec::new())),
    );
    Value::Object(journal)
}

fn steady_states(probes: &[ProbeRecord]) -> Value {
    let group = |moment: Moment| {
        let mut checks: Vec<(&ProbeRecord, &Check)> = probes
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
            .filter(|(_, c)| c.moment == moment)
            .collect();
        checks.sort_by_key(|(_, c)| c.at_ms);
        Value::Array(checks.into_iter().map(|(p, c)| entry(p, c)).collect())
    };
    json!({
        "before": group(Moment::Before),
        "during": group(Moment::During),
        "after": group(Moment::After),
    })
}

fn entry(probe: &ProbeRecord, check: &Check) -> Value {
    let mut map = match serde_json::to_value(check) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => Map::new(),
    };
    map.remove("moment");
    map.insert("probe".into(), json!(probe.name));
    map.insert("reference".into(), json!(probe.reference));
    if let Some(mode) = probe.mode {
        map.insert("mode".into(), json!(mode));
    }
    Value::Object(map)
}
