//! The timeline of the HTML report, server-rendered inline SVG (no script): one row per lane
//! with its faults as bars spanning injected..reverted and its waits and probe actions, one
//! row per probe with its checks as marks, a time axis with ticks, and a legend.
//!
//! Stable hooks for tests and style: `svg#timeline`; rows `g.row.lane` and `g.row.probe`;
//! `rect.bar.fault.<status>` (`id="fault-<i>"`, i the fault's index in the record),
//! `rect.bar.wait.<status>`, `rect.bar.probe.<status>`; `circle.mark.<verdict>`
//! (`id="check-<probe>-<check>"`); `line.tick`; `rect.window` (while a fault is injected).
//! Every element has the fill of [`fault_fill`] or [`mark_fill`] (the colours it shares with the
//! live view) as an attribute, so the page looks the same with or without its style sheet.

use super::super::record::{Activity, Check, FaultRecord, FaultStatus, Record};
use super::style::{GRID, PROBE_FILL, SPAN_FILL, WAIT_FILL, WINDOW_FILL, fault_fill, mark_fill};
use super::{MAX_MESSAGE, MAX_NAME, escape, time};
use crate::host::Verdict;
use std::fmt::Write as _;

const WIDTH: i64 = 1100;
/// Where the plot starts and ends; the row labels are left of it.
const X0: i64 = 200;
const X1: i64 = 1084;
const AXIS: i64 = 28;
const ROW: i64 = 28;
const BAR: i64 = 16;
const THIN: i64 = 10;
const MARK_R: i64 = 5;
const LEGEND: i64 = 34;
/// Characters of a row label; the whole name is in its tooltip.
const LABEL: usize = 26;
/// Marks drawn per probe: every check that did not pass (up to this many), then passed ones
/// evenly spread over what is left.
const MAX_MARKS: usize = 2000;

/// Maps times to x: the run's start to [`X0`], its end to [`X1`]; times outside are clamped.
struct Scale {
    t0: u64,
    span: u64,
}

impl Scale {
    fn of(record: &Record) -> Scale {
        let t0 = record.started_ms;
        let end = match record.ended_ms {
            Some(end) if end > t0 => end,
            _ => seen_times(record).max().unwrap_or(t0),
        };
        Scale {
            t0,
            span: time::span(t0, end).max(1),
        }
    }

    fn x(&self, at: u64) -> i64 {
        let d = time::span(self.t0, at).min(self.span);
        X0 + ((d as f64 / self.span as f64) * (X1 - X0) as f64).round() as i64
    }

    fn end(&self) -> u64 {
        self.t0.saturating_add(self.span)
    }

    /// `(x, width)` of `start..end`, at least 2 pixels wide so that a short step shows.
    fn bar(&self, start: u64, end: u64) -> (i64, i64) {
        let (a, b) = (self.x(start), self.x(end.max(start)));
        (a.min(X1 - 2), (b - a).max(2))
    }
}

/// Every time the record holds, for the end of a run that has not ended.
fn seen_times(record: &Record) -> impl Iterator<Item = u64> + '_ {
    let faults = record.faults.iter().flat_map(|f| {
        [f.started_ms, f.ended_ms].into_iter().flatten().chain(
            f.targets
                .iter()
                .flat_map(|t| [t.injected_ms, t.reverted_ms].into_iter().flatten()),
        )
    });
    let activities = record
        .activities
        .iter()
        .flat_map(|a| [a.started_ms, a.ended_ms].into_iter().flatten());
    let checks = record
        .probes
        .iter()
        .flat_map(|p| p.checks.iter().map(|c| c.at_ms));
    faults.chain(activities).chain(checks)
}

/// When a fault was injected: from its first target's inject to its last target's revert
/// (or, for a fault never injected, its start to its end); `None` when it never started.
fn injected(fault: &FaultRecord, scale: &Scale) -> Option<(u64, u64)> {
    let first = fault.targets.iter().filter_map(|t| t.injected_ms).min();
    let last = fault.targets.iter().filter_map(|t| t.reverted_ms).max();
    let end = fault.ended_ms.unwrap_or_else(|| scale.end());
    match first {
        Some(first) => Some((first, last.unwrap_or(end))),
        None => fault.started_ms.map(|s| (s, end)),
    }
}

/// The lanes, in the order they first appear in the activities, then the faults.
fn lanes(record: &Record) -> Vec<&str> {
    let mut lanes: Vec<&str> = Vec::new();
    let names = record
        .activities
        .iter()
        .map(|a| a.lane.as_str())
        .chain(record.faults.iter().map(|f| f.lane.as_str()));
    for lane in names {
        if !lanes.contains(&lane) {
            lanes.push(lane);
        }
    }
    lanes
}

/// The timeline of `record` as an `<svg>` element.
pub(super) fn svg(record: &Record) -> String {
    let scale = Scale::of(record);
    let lanes = lanes(record);
    let rows = (lanes.len() + record.probes.len()) as i64;
    let plot_bottom = AXIS + rows * ROW;
    let height = plot_bottom + LEGEND;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg id="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of the run">"#
    );

    // Backgrounds first: rows, the windows in which a fault was injected, the grid.
    for i in 0..rows {
        let fill = if i % 2 == 0 { "#fafafa" } else { "#ffffff" };
        let _ = writeln!(
            svg,
            r#"<rect class="row-bg" x="0" y="{}" width="{WIDTH}" height="{ROW}" fill="{fill}"/>"#,
            AXIS + i * ROW
        );
    }
    for fault in &record.faults {
        if let Some((a, b)) = injected(fault, &scale) {
            let (x, w) = scale.bar(a, b);
            let _ = writeln!(
                svg,
                r#"<rect class="window" x="{x}" y="{AXIS}" width="{w}" height="{}" fill="{WINDOW_FILL}" fill-opacity="0.6"/>"#,
                rows * ROW
            );
        }
    }
    axis(&mut svg, &scale, plot_bottom);

    for (i, lane) in lanes.iter().enumerate() {
        let top = AXIS + i as i64 * ROW;
        let _ = writeln!(svg, r#"<g class="row lane" id="lane-{i}">"#);
        label(&mut svg, top, lane, "lane");
        for a in record
            .activities
            .iter()
            .filter(|a| a.lane == *lane && a.kind != "fault")
        {
            step(&mut svg, &scale, top, a);
        }
        for (f, fault) in record.faults.iter().enumerate() {
            if fault.lane == *lane {
                fault_bar(&mut svg, &scale, top, f, fault);
            }
        }
        svg.push_str("</g>\n");
    }
    for (p, probe) in record.probes.iter().enumerate() {
        let top = AXIS + (lanes.len() + p) as i64 * ROW;
        let _ = writeln!(svg, r#"<g class="row probe" id="probe-{p}">"#);
        label(&mut svg, top, &probe.name, "probe");
        for (c, check) in drawn(&probe.checks) {
            mark(&mut svg, &scale, top, p, c, &probe.name, check);
        }
        svg.push_str("</g>\n");
    }
    if let Some(end) = record.ended_ms {
        let x = scale.x(end);
        let _ = writeln!(
            svg,
            r##"<line class="end" x1="{x}" y1="{AXIS}" x2="{x}" y2="{plot_bottom}" stroke="#616161" stroke-dasharray="4 3"><title>end of the run</title></line>"##
        );
    }
    legend(&mut svg, plot_bottom + 10);
    svg.push_str("</svg>\n");
    svg
}

fn axis(svg: &mut String, scale: &Scale, bottom: i64) {
    let step = time::tick_step(scale.span);
    svg.push_str(r#"<g class="axis">"#);
    svg.push('\n');
    let mut at: u64 = 0;
    while at <= scale.span {
        let x = scale.x(scale.t0.saturating_add(at));
        let _ = writeln!(
            svg,
            r#"<line class="tick" x1="{x}" y1="{}" x2="{x}" y2="{bottom}" stroke="{GRID}"/><text x="{x}" y="16" text-anchor="middle">{}</text>"#,
            AXIS - 6,
            time::tick_label(at, step)
        );
        match at.checked_add(step) {
            Some(next) => at = next,
            None => break,
        }
    }
    svg.push_str("</g>\n");
}

fn label(svg: &mut String, top: i64, name: &str, kind: &str) {
    let short: String = if name.chars().count() > LABEL {
        name.chars().take(LABEL - 1).chain(['…']).collect()
    } else {
        name.to_string()
    };
    let _ = writeln!(
        svg,
        r#"<text class="label {kind}" x="8" y="{}"><title>{kind} {}</title>{}</text>"#,
        top + ROW / 2 + 4,
        escape::text(&escape::clip(name, MAX_NAME)),
        escape::text(&short),
    );
}

fn fault_bar(svg: &mut String, scale: &Scale, top: i64, index: usize, fault: &FaultRecord) {
    let Some((a, b)) = injected(fault, scale) else {
        return;
    };
    // The whole step (resolve, inject, hold, revert) as a thin band behind its injected bar.
    if let Some(start) = fault.started_ms {
        let (x, w) = scale.bar(start, fault.ended_ms.unwrap_or_else(|| scale.end()));
        let _ = writeln!(
            svg,
            r#"<rect class="span fault" x="{x}" y="{}" width="{w}" height="4" fill="{SPAN_FILL}"/>"#,
            top + ROW / 2 - 2
        );
    }
    let (x, w) = scale.bar(a, b);
    let status = fault.status.as_str();
    let mut title = format!(
        "{}: {status}, injected {} to {}",
        escape::clip(&fault.name, MAX_NAME),
        time::offset(scale.t0, Some(a)),
        time::offset(scale.t0, Some(b)),
    );
    for t in fault.targets.iter().take(20) {
        let _ = write!(title, "\ntarget {}", escape::clip(&t.target, MAX_NAME));
        if let Some(e) = &t.error {
            let _ = write!(title, ": {}", escape::clip(e, MAX_MESSAGE));
        }
    }
    if let Some(m) = &fault.message {
        let _ = write!(title, "\n{}", escape::clip(m, MAX_MESSAGE));
    }
    let _ = writeln!(
        svg,
        r#"<rect class="bar fault {status}" id="fault-{index}" x="{x}" y="{}" width="{w}" height="{BAR}" fill="{}"><title>{}</title></rect>"#,
        top + (ROW - BAR) / 2,
        fault_fill(fault.status),
        escape::text(&title),
    );
}

fn step(svg: &mut String, scale: &Scale, top: i64, a: &Activity) {
    let Some(start) = a.started_ms else {
        return;
    };
    let (x, w) = scale.bar(start, a.ended_ms.unwrap_or_else(|| scale.end()));
    let (kind, fill) = match a.kind.as_str() {
        "wait" => ("wait", WAIT_FILL),
        "probe" => ("probe", PROBE_FILL),
        _ => ("other", WAIT_FILL),
    };
    let status = escape::class(&a.status);
    // A step that did not complete gets a dark outline, its colour stays its kind's.
    let outline = if status == "completed" {
        String::new()
    } else {
        r##" stroke="#b71c1c" stroke-width="1""##.to_string()
    };
    let mut title = format!(
        "{kind} {}: {}, {} to {}",
        escape::clip(&a.name, MAX_NAME),
        escape::clip(&a.status, MAX_NAME),
        time::offset(scale.t0, Some(start)),
        time::offset(scale.t0, a.ended_ms),
    );
    if !a.output.is_empty() {
        let _ = write!(title, "\n{}", escape::clip(&a.output, MAX_MESSAGE));
    }
    let _ = writeln!(
        svg,
        r#"<rect class="bar {kind} {status}" x="{x}" y="{}" width="{w}" height="{THIN}" fill="{fill}"{outline}><title>{}</title></rect>"#,
        top + (ROW - THIN) / 2,
        escape::text(&title),
    );
}

/// The checks to draw, in drawing order: passed first, so that a failure is never hidden
/// under a pass; at most [`MAX_MARKS`].
fn drawn(checks: &[Check]) -> Vec<(usize, &Check)> {
    let passed = || {
        checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.verdict == Verdict::Passed)
    };
    let mut not_passed: Vec<(usize, &Check)> = checks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.verdict != Verdict::Passed)
        .take(MAX_MARKS)
        .collect();
    let room = MAX_MARKS - not_passed.len();
    let count = passed().count();
    let mut out: Vec<(usize, &Check)> = if count <= room {
        passed().collect()
    } else if room == 0 {
        Vec::new()
    } else {
        // Every stride-th pass, so the passes that are drawn still span the whole run.
        let stride = count.div_ceil(room);
        passed().step_by(stride).collect()
    };
    out.append(&mut not_passed);
    out
}

fn mark(
    svg: &mut String,
    scale: &Scale,
    top: i64,
    probe_index: usize,
    index: usize,
    probe: &str,
    check: &Check,
) {
    let verdict = check.verdict.as_str();
    let title = format!(
        "{} {verdict} at {} ({}): {}",
        escape::clip(probe, MAX_NAME),
        time::offset(scale.t0, Some(check.at_ms)),
        check.moment.as_str(),
        escape::clip(&check.message, MAX_MESSAGE),
    );
    let _ = writeln!(
        svg,
        r#"<circle class="mark {verdict}" id="check-{probe_index}-{index}" cx="{}" cy="{}" r="{MARK_R}" fill="{}"><title>{}</title></circle>"#,
        scale.x(check.at_ms),
        top + ROW / 2,
        mark_fill(check.verdict),
        escape::text(&title),
    );
}

fn legend(svg: &mut String, y: i64) {
    let items: [(&str, &str, bool); 9] = [
        ("completed", fault_fill(FaultStatus::Completed), false),
        (
            "completed with error",
            fault_fill(FaultStatus::CompletedWithError),
            false,
        ),
        ("error", fault_fill(FaultStatus::Error), false),
        ("stopped", fault_fill(FaultStatus::Stopped), false),
        ("wait", WAIT_FILL, false),
        ("probe action", PROBE_FILL, false),
        ("check passed", mark_fill(Verdict::Passed), true),
        ("failed", mark_fill(Verdict::Failed), true),
        ("not applicable", mark_fill(Verdict::NotApplicable), true),
    ];
    svg.push_str(r#"<g class="legend">"#);
    svg.push('\n');
    let mut x = 8;
    for (name, fill, round) in items {
        if round {
            let _ = write!(
                svg,
                r#"<circle cx="{}" cy="{}" r="{MARK_R}" fill="{fill}"/>"#,
                x + 6,
                y + 6
            );
        } else {
            let _ = write!(
                svg,
                r#"<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}"/>"#
            );
        }
        let _ = writeln!(svg, r#"<text x="{}" y="{}">{name}</text>"#, x + 16, y + 10);
        x += 16 + 7 * name.len() as i64 + 14;
    }
    svg.push_str("</g>\n");
}
