//! The HTML report of a run: one self-contained page, server-rendered, without script.

use super::super::record::{Check, FaultRecord, LogEntry, ProbeRecord, Record, Source};
use super::super::spec::ProbeMode;
use super::style::{BADGES, PAGE};
use super::{MAX_LISTED, MAX_MESSAGE, MAX_NAME, escape, time, timeline};
use crate::host::Verdict;
use std::fmt::Write as _;

/// Log lines the page shows; the journal (`--json`) has them all.
const MAX_LOG: usize = 5000;

/// A self-contained HTML page of a run, for people who would rather look than read: a header
/// (name, status, end state, score, duration, reason), the timeline (inline SVG: one row per
/// lane with faults as bars spanning injected..reverted coloured by status, waits and probe
/// actions; one row per probe with its checks as marks, green passed, red failed, grey not
/// applicable; a time axis), then tables of the faults, the probes (each check under a
/// `<details>`), the activities, and the log.
///
/// The page loads nothing: no script, no URL of any kind (its Content-Security-Policy forbids
/// loading anything too); its one style sheet is inline. Every name and message is
/// HTML-escaped and bounded in length, and the page shows at most 5000 log lines. The SVG's
/// classes and ids are stable: `rect.bar.fault.<status>` (`id="fault-<i>"`),
/// `rect.bar.wait.<status>`, `rect.bar.probe.<status>`, `circle.mark.<verdict>`
/// (`id="check-<probe>-<check>"`), `g.row.lane`, `g.row.probe`, `line.tick`.
pub fn html(record: &Record, log: &[LogEntry]) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let name = escape::text(&escape::clip(&record.name, MAX_NAME));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name} — Faultline report</title>\n<style>\n{PAGE}{BADGES}</style>\n</head>\n<body>\n"
    );
    header(&mut page, record);
    page.push_str("<section id=\"timeline-section\">\n<h2>Timeline</h2>\n");
    page.push_str(&timeline::svg(record));
    page.push_str("</section>\n");
    faults(&mut page, record);
    probes(&mut page, record);
    activities(&mut page, record);
    log_table(&mut page, record.started_ms, log);
    page.push_str("</body>\n</html>\n");
    page
}

/// `word` as a status badge.
fn badge(word: &str) -> String {
    format!(
        r#"<span class="status s-{}">{}</span>"#,
        escape::class(word),
        escape::text(&escape::clip(word, MAX_NAME))
    )
}

/// A bounded, escaped cell text.
fn cell(text: &str, max: usize) -> String {
    escape::text(&escape::clip(text, max))
}

fn header(page: &mut String, r: &Record) {
    let _ = writeln!(
        page,
        "<header id=\"summary\">\n<h1>{}</h1>",
        cell(&r.name, MAX_NAME)
    );
    if !r.description.is_empty() {
        let _ = writeln!(
            page,
            r#"<p class="description">{}</p>"#,
            cell(&r.description, MAX_MESSAGE)
        );
    }
    page.push_str("<dl class=\"facts\">\n");
    let mut fact = |id: &str, name: &str, value: String| {
        let _ = writeln!(page, r#"<dt>{name}</dt><dd id="{id}">{value}</dd>"#);
    };
    fact("status", "Status", badge(r.status.as_str()));
    fact(
        "end-state",
        "End state",
        r.end_state
            .map_or_else(|| "—".to_string(), |e| badge(&e.as_str().to_lowercase())),
    );
    fact(
        "score",
        "Score",
        r.score
            .filter(|s| s.is_finite())
            .map_or_else(|| "—".to_string(), |s| format!("{s:.1}")),
    );
    fact(
        "duration",
        "Duration",
        r.ended_ms.map_or_else(
            || "not ended".to_string(),
            |e| time::duration(time::span(r.started_ms, e)),
        ),
    );
    fact("started", "Started", time::rfc3339(r.started_ms));
    fact(
        "reason",
        "Reason",
        r.reason
            .as_deref()
            .map_or_else(|| "—".to_string(), |s| cell(s, MAX_MESSAGE)),
    );
    fact("run-id", "Run", cell(&r.id, MAX_NAME));
    fact(
        "file",
        "File",
        format!(
            "{} <small>{}</small>",
            cell(&r.file, MAX_MESSAGE),
            cell(&r.file_digest, MAX_NAME)
        ),
    );
    if !r.tags.is_empty() {
        let tags: Vec<String> = r
            .tags
            .iter()
            .take(MAX_LISTED)
            .map(|t| cell(t, MAX_NAME))
            .collect();
        fact("tags", "Tags", tags.join(", "));
    }
    page.push_str("</dl>\n</header>\n");
}

fn percent(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "—".to_string(), |v| format!("{v:.1}%"))
}

fn faults(page: &mut String, r: &Record) {
    let t0 = r.started_ms;
    page.push_str(
        "<section id=\"faults\">\n<h2>Faults</h2>\n<table>\n<thead><tr><th>Fault</th><th>Lane</th>\
         <th>Component</th><th>Weight</th><th>Held</th><th>Status</th><th>Probe success</th>\
         <th>Start</th><th>End</th><th>Targets</th></tr></thead>\n<tbody>\n",
    );
    if r.faults.is_empty() {
        page.push_str("<tr><td colspan=\"10\" class=\"note\">no fault steps</td></tr>\n");
    }
    for (i, f) in r.faults.iter().enumerate() {
        let _ = write!(
            page,
            r#"<tr id="fault-row-{i}"><td class="text">{}</td><td class="text">{}</td><td class="text">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>"#,
            cell(&f.name, MAX_NAME),
            cell(&f.lane, MAX_NAME),
            component(&f.reference, f.resolved.as_deref()),
            f.weight,
            time::duration(f.duration_ms),
            badge(f.status.as_str()),
            percent(f.probe_success),
            time::offset(t0, f.started_ms),
            time::offset(t0, f.ended_ms),
        );
        targets(page, t0, f);
        page.push_str("</td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

fn component(reference: &str, resolved: Option<&str>) -> String {
    match resolved {
        Some(resolved) => format!(
            "{}<br><small>{}</small>",
            cell(reference, MAX_NAME),
            cell(resolved, MAX_NAME)
        ),
        None => cell(reference, MAX_NAME),
    }
}

fn targets(page: &mut String, t0: u64, f: &FaultRecord) {
    if let Some(m) = &f.message {
        let _ = write!(page, r#"<div class="text">{}</div>"#, cell(m, MAX_MESSAGE));
    }
    if f.targets.is_empty() {
        page.push_str(r#"<span class="note">no targets</span>"#);
        return;
    }
    page.push_str(r#"<ul class="targets">"#);
    for (i, t) in f.targets.iter().enumerate() {
        if i == MAX_LISTED {
            let _ = write!(
                page,
                r#"<li class="note">{} more targets</li>"#,
                f.targets.len() - i
            );
            break;
        }
        let _ = write!(
            page,
            "<li>{}: injected {}, reverted {}",
            cell(&t.target, MAX_NAME),
            time::offset(t0, t.injected_ms),
            time::offset(t0, t.reverted_ms)
        );
        if let Some(reason) = &t.reason {
            let _ = write!(page, ", {}", cell(reason, MAX_MESSAGE));
        }
        if let Some(error) = &t.error {
            let _ = write!(page, r#"; <b>error</b>: {}"#, cell(error, MAX_MESSAGE));
        }
        page.push_str("</li>");
    }
    page.push_str("</ul>");
}

fn probes(page: &mut String, r: &Record) {
    page.push_str(
        "<section id=\"probes\">\n<h2>Probes</h2>\n<table>\n<thead><tr><th>Probe</th>\
         <th>Component</th><th>Mode</th><th>Judges</th><th>Checks</th><th>Passed</th>\
         <th>Failed</th><th>Not applicable</th><th>Success rate</th><th>Verdict</th></tr></thead>\n<tbody>\n",
    );
    if r.probes.is_empty() {
        page.push_str("<tr><td colspan=\"10\" class=\"note\">no probes</td></tr>\n");
    }
    for (i, p) in r.probes.iter().enumerate() {
        let count = |v: Verdict| p.checks.iter().filter(|c| c.verdict == v).count();
        let judges: Vec<String> = p
            .faults
            .iter()
            .take(MAX_LISTED)
            .map(|f| cell(f, MAX_NAME))
            .collect();
        let _ = writeln!(
            page,
            r#"<tr id="probe-row-{i}"><td class="text">{}</td><td class="text">{}</td><td>{}</td><td class="text">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            cell(&p.name, MAX_NAME),
            component(&p.reference, p.resolved.as_deref()),
            p.mode.map_or("probe action", ProbeMode::as_str),
            judges.join(", "),
            p.checks.len(),
            count(Verdict::Passed),
            count(Verdict::Failed),
            count(Verdict::NotApplicable),
            percent(p.success_rate),
            p.verdict
                .map_or_else(|| "never checked".to_string(), |v| badge(v.as_str())),
        );
    }
    page.push_str("</tbody>\n</table>\n");
    for p in r.probes.iter().filter(|p| !p.checks.is_empty()) {
        checks(page, r.started_ms, p);
    }
    page.push_str("</section>\n");
}

fn checks(page: &mut String, t0: u64, p: &ProbeRecord) {
    let _ = writeln!(
        page,
        "<details><summary>The {} checks of {}</summary>\n<table>\n<thead><tr><th>At</th>\
         <th>Moment</th><th>Verdict</th><th>Message</th><th>Value</th><th>Attempts</th>\
         <th>Took</th></tr></thead>\n<tbody>",
        p.checks.len(),
        cell(&p.name, MAX_NAME)
    );
    for (i, c) in p.checks.iter().enumerate() {
        if i == MAX_LISTED {
            let _ = writeln!(
                page,
                r#"<tr><td colspan="7" class="note">{} more checks (the JSON journal has them all)</td></tr>"#,
                p.checks.len() - i
            );
            break;
        }
        check_row(page, t0, c);
    }
    page.push_str("</tbody>\n</table>\n</details>\n");
}

fn check_row(page: &mut String, t0: u64, c: &Check) {
    let value = c
        .value
        .filter(|v| v.is_finite())
        .map_or_else(String::new, |v| format!("{v}"));
    let took = if c.elapsed_ms.is_finite() && c.elapsed_ms >= 0.0 {
        format!("{:.1} ms", c.elapsed_ms)
    } else {
        "—".to_string()
    };
    let _ = writeln!(
        page,
        r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td class="text">{}</td><td class="num">{value}</td><td class="num">{}</td><td class="num">{took}</td></tr>"#,
        time::offset(t0, Some(c.at_ms)),
        c.moment.as_str(),
        badge(c.verdict.as_str()),
        cell(&c.message, MAX_MESSAGE),
        c.attempts,
    );
}

fn activities(page: &mut String, r: &Record) {
    page.push_str(
        "<section id=\"activities\">\n<h2>Activities</h2>\n<table>\n<thead><tr><th>Lane</th>\
         <th>Kind</th><th>Step</th><th>Start</th><th>End</th><th>Status</th><th>Output</th></tr></thead>\n<tbody>\n",
    );
    if r.activities.is_empty() {
        page.push_str("<tr><td colspan=\"7\" class=\"note\">no activities</td></tr>\n");
    }
    for a in &r.activities {
        let _ = writeln!(
            page,
            r#"<tr><td class="text">{}</td><td>{}</td><td class="text">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="text">{}</td></tr>"#,
            cell(&a.lane, MAX_NAME),
            cell(&a.kind, MAX_NAME),
            cell(&a.name, MAX_NAME),
            time::offset(r.started_ms, a.started_ms),
            time::offset(r.started_ms, a.ended_ms),
            badge(&a.status),
            cell(&a.output, MAX_MESSAGE),
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

fn source_word(source: Source) -> &'static str {
    match source {
        Source::Engine => "engine",
        Source::Host => "host",
        Source::Guest => "guest",
        Source::Probe => "probe",
    }
}

fn log_table(page: &mut String, t0: u64, log: &[LogEntry]) {
    page.push_str(
        "<section id=\"log\">\n<h2>Log</h2>\n<table>\n<thead><tr><th>At</th><th>Source</th>\
         <th>Level</th><th>Step</th><th>Message</th></tr></thead>\n<tbody>\n",
    );
    if log.is_empty() {
        page.push_str("<tr><td colspan=\"5\" class=\"note\">no log lines</td></tr>\n");
    }
    for (i, e) in log.iter().enumerate() {
        if i == MAX_LOG {
            let _ = writeln!(
                page,
                r#"<tr><td colspan="5" class="note">{} more lines (the JSON journal has them all)</td></tr>"#,
                log.len() - i
            );
            break;
        }
        let _ = writeln!(
            page,
            r#"<tr class="level-{}"><td class="num">{}</td><td>{}</td><td>{}</td><td class="text">{}</td><td class="log">{}</td></tr>"#,
            escape::class(&e.level),
            time::offset(t0, Some(e.at_ms)),
            source_word(e.source),
            cell(&e.level, MAX_NAME),
            e.step
                .as_deref()
                .map_or_else(String::new, |s| cell(s, MAX_NAME)),
            cell(&e.message, MAX_MESSAGE),
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}
