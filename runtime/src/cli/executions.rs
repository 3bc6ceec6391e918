//! `faultline executions`: the history of experiment runs (`list`, `show ID`, `log ID`), read
//! from `<state_dir>/history.sqlite` ([`crate::experiment::store::history_path`]).
//!
//! Opening the history closes runs whose process died (see [`crate::experiment::store`]), so
//! `list` never shows a crashed run as running. Text output escapes control characters: names,
//! reasons and log lines come from experiment files and plug-ins.

use super::{EXIT_OK, EXIT_USAGE};
use crate::experiment::record::{LogEntry, Record};
use crate::experiment::store::{Store, Summary, history_path};
use clap::Subcommand;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// `faultline executions …`.
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// The newest runs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run: status, end state, score, faults, probes.
    Show {
        /// The run's id.
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run's log.
    Log {
        /// The run's id.
        id: String,
    },
}

/// What the history said, read on the blocking pool.
enum Answer {
    List(Vec<Summary>),
    Show(Box<Record>),
    Log(Vec<LogEntry>),
    Unknown(String),
}

/// Runs `faultline executions …` on the history in `state_dir`.
pub async fn run(command: ExecutionsCommand, state_dir: &Path, out: &mut dyn Write) -> u8 {
    let path = history_path(state_dir);
    let json = matches!(
        command,
        ExecutionsCommand::List { json: true, .. } | ExecutionsCommand::Show { json: true, .. }
    );
    let file = path.clone();
    // SQLite and /proc reads are blocking: off the async threads.
    let answer = tokio::task::spawn_blocking(move || read(command, &file)).await;
    let answer = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
        Err(e) => {
            let _ = writeln!(out, "error: reading the history failed: {e}");
            return EXIT_USAGE;
        }
    };
    let written = match answer {
        Answer::Unknown(id) => {
            let _ = writeln!(
                out,
                "error: no execution {id} in the history at {}",
                path.display()
            );
            return EXIT_USAGE;
        }
        Answer::List(runs) if json => print_json(&runs, out),
        Answer::List(runs) => print_list(&runs, &format!("the history at {}", path.display()), out),
        Answer::Show(record) if json => print_json(&record, out),
        Answer::Show(record) => print_show(&record, out),
        Answer::Log(lines) => print_log(&lines, out),
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(out, "error: cannot write the output: {e}");
            EXIT_USAGE
        }
    }
}

/// Opens the history and answers the command. Sync.
fn read(command: ExecutionsCommand, path: &Path) -> anyhow::Result<Answer> {
    let store = Store::open(path)?;
    Ok(match command {
        ExecutionsCommand::List { limit, .. } => Answer::List(store.list(limit)?),
        ExecutionsCommand::Show { id, .. } => match store.get(&id)? {
            Some(record) => Answer::Show(Box::new(record)),
            None => Answer::Unknown(id),
        },
        ExecutionsCommand::Log { id } => {
            // An id with no lines may still be a run (one that logged nothing).
            let lines = store.log(&id)?;
            if lines.is_empty() && store.get(&id)?.is_none() {
                Answer::Unknown(id)
            } else {
                Answer::Log(lines)
            }
        }
    })
}

fn print_json<T: serde::Serialize>(value: &T, out: &mut dyn Write) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// The runs as a table; `place` says where they are kept (`the history at …`, `agent a`).
pub(super) fn print_list(
    runs: &[Summary],
    place: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs in {place}");
    }
    let header = [
        "ID",
        "NAME",
        "STATUS",
        "END STATE",
        "SCORE",
        "STARTED",
        "DURATION",
    ];
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                plain(&r.name),
                r.status.as_str().to_string(),
                r.end_state.as_deref().map_or_else(|| "-".into(), plain),
                score(r.score),
                time_seconds(r.started_ms),
                r.ended_ms.map_or_else(
                    || "-".into(),
                    |end| duration(end.saturating_sub(r.started_ms)),
                ),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// One run, for people.
pub(super) fn print_show(r: &Record, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "execution {}", r.id)?;
    writeln!(out, "  experiment  {} ({})", plain(&r.name), plain(&r.file))?;
    let end_state = r.end_state.map_or("-", |e| e.as_str());
    writeln!(
        out,
        "  status      {} (end state {end_state})",
        r.status.as_str()
    )?;
    if let Some(reason) = &r.reason {
        writeln!(out, "  reason      {}", plain(reason))?;
    }
    writeln!(out, "  score       {}", score(r.score))?;
    writeln!(out, "  started     {}", time_seconds(r.started_ms))?;
    if let Some(end) = r.ended_ms {
        writeln!(
            out,
            "  ended       {} (after {})",
            time_seconds(end),
            duration(end.saturating_sub(r.started_ms))
        )?;
    }
    writeln!(
        out,
        "  process     pid {} (boot {})",
        r.owner_pid,
        plain(&r.boot_id)
    )?;
    writeln!(out, "faults: {}", r.faults.len())?;
    for f in &r.faults {
        let resolved = f.resolved.as_deref().unwrap_or(&f.reference);
        let success = f.probe_success.map_or_else(
            || "no probe judged it".into(),
            |p| format!("probe success {p:.1}%"),
        );
        writeln!(
            out,
            "  {} [lane {}]  {}  {}, weight {}, {}",
            plain(&f.name),
            plain(&f.lane),
            plain(resolved),
            f.status.as_str(),
            f.weight,
            success
        )?;
        if let Some(m) = &f.message {
            writeln!(out, "      {}", plain(m))?;
        }
        for t in &f.targets {
            let mut text = format!("      target {}", plain(&t.target));
            if let Some(reason) = &t.reason {
                text.push_str(&format!(": {}", plain(reason)));
            }
            if let Some(error) = &t.error {
                text.push_str(&format!(" (error: {})", plain(error)));
            }
            writeln!(out, "{text}")?;
        }
    }
    writeln!(out, "probes: {}", r.probes.len())?;
    for p in &r.probes {
        let mode = p
            .mode
            .and_then(|m| serde_json::to_value(m).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "action".into());
        let passed = p
            .checks
            .iter()
            .filter(|c| c.verdict == crate::host::Verdict::Passed)
            .count();
        let verdict = p.verdict.map_or("not judged", |v| v.as_str());
        let mut text = format!(
            "  {} ({mode})  {verdict}, {} check(s), {passed} passed",
            plain(&p.name),
            p.checks.len()
        );
        if let Some(rate) = p.success_rate {
            text.push_str(&format!(", success {rate:.1}%"));
        }
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// A run's log lines, for people.
pub(super) fn print_log(lines: &[LogEntry], out: &mut dyn Write) -> std::io::Result<()> {
    for l in lines {
        let source = serde_json::to_value(l.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let step = l
            .step
            .as_deref()
            .map(|s| format!("[{}] ", plain(s)))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {source} {} {step}{}",
            time(l.at_ms, true),
            plain(&l.level),
            plain(&l.message)
        )?;
    }
    Ok(())
}

/// One decimal, `-` when there is none.
fn score(score: Option<f64>) -> String {
    score.map_or_else(|| "-".into(), |s| format!("{s:.1}"))
}

/// RFC 3339 UTC, to the second.
fn time_seconds(ms: u64) -> String {
    time(ms, false)
}

/// RFC 3339 UTC, to the second or the millisecond; past the year 9999 (which RFC 3339 cannot
/// write, and humantime refuses), the number itself.
fn time(ms: u64, millis: bool) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return format!("{ms}ms after the epoch");
    }
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    if millis {
        humantime::format_rfc3339_millis(at).to_string()
    } else {
        humantime::format_rfc3339_seconds(at).to_string()
    }
}

/// `850ms`, `4.2s`, then whole seconds: `2m 5s`.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

/// `text` with control characters escaped, so a name or log line cannot drive the terminal.
pub(super) fn plain(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(plain("ok name"), "ok name");
        assert_eq!(plain("a\x1b[31mred\nb"), "a\\u{1b}[31mred\\nb");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(4_250), "4.2s");
        assert_eq!(duration(125_400), "2m 5s");
        assert_eq!(score(Some(87.46)), "87.5");
        assert_eq!(score(None), "-");
    }

    #[test]
    fn times_past_the_year_9999_do_not_fail() {
        assert_eq!(time(0, true), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_seconds(253_402_300_799_999), "9999-12-31T23:59:59Z");
        assert_eq!(
            time(u64::MAX, false),
            format!("{}ms after the epoch", u64::MAX)
        );
    }
}
