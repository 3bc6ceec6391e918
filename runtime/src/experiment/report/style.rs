//! The look of a run's pages, one for every page that shows a run: the HTML report writes the
//! timeline's colours as SVG fill attributes ([`fault_fill`], [`mark_fill`]) and inlines
//! [`PAGE`] and [`BADGES`]; the agent's live view serves the same two sheets and the colours as
//! a style sheet ([`timeline_css`]).

use super::super::record::FaultStatus;
use crate::host::Verdict;
use std::fmt::Write as _;

/// Every fault status, in the order a legend lists them.
const FAULT_STATUSES: [FaultStatus; 7] = [
    FaultStatus::Pending,
    FaultStatus::Running,
    FaultStatus::Completed,
    FaultStatus::CompletedWithError,
    FaultStatus::Error,
    FaultStatus::Stopped,
    FaultStatus::Skipped,
];

/// Every verdict.
const VERDICTS: [Verdict; 3] = [Verdict::Passed, Verdict::Failed, Verdict::NotApplicable];

/// The fill of a fault bar of `status`.
pub(crate) fn fault_fill(status: FaultStatus) -> &'static str {
    match status {
        FaultStatus::Completed => "#43a047",
        FaultStatus::CompletedWithError => "#fb8c00",
        FaultStatus::Error => "#e53935",
        FaultStatus::Stopped => "#8e24aa",
        FaultStatus::Running => "#1e88e5",
        // Not injected yet: a pale shade of running, so a live page tells the two apart.
        FaultStatus::Pending => "#90caf9",
        FaultStatus::Skipped => "#bdbdbd",
    }
}

/// The fill of a probe check's mark.
pub(crate) fn mark_fill(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "#2e7d32",
        Verdict::Failed => "#c62828",
        Verdict::NotApplicable => "#757575",
    }
}

/// A wait step's bar.
pub(crate) const WAIT_FILL: &str = "#b0bec5";
/// A probe action's bar.
pub(crate) const PROBE_FILL: &str = "#4db6ac";
/// The thin band of a whole fault step (resolve, inject, hold, revert).
pub(crate) const SPAN_FILL: &str = "#cfd8dc";
/// The background of the time in which a fault was injected.
pub(crate) const WINDOW_FILL: &str = "#fff3e0";
/// The time axis' grid lines.
pub(crate) const GRID: &str = "#e0e0e0";

/// The page's style sheet: type, facts, tables, the timeline's frame. It loads nothing (no
/// font, image or URL of any kind).
pub(crate) const PAGE: &str = include_str!("report.css");

/// The status badges (`span.status.s-<word>`) of the report and the live view.
pub(crate) const BADGES: &str = include_str!("badges.css");

/// The timeline's colours as CSS for a page that draws the timeline with script: SVG fills of
/// `#timeline .bar.fault.<status>`, `.bar.wait`, `.bar.probe`, `.span`, `.window`,
/// `.mark.<verdict>`, the grid's `.tick` stroke, and legend swatches `.swatch.fault-<status>`,
/// `.swatch.mark-<verdict>`, `.swatch.wait`, `.swatch.probe`.
pub(crate) fn timeline_css() -> String {
    let mut css = String::from("/* The timeline's colours, from experiment/report/style.rs. */\n");
    for status in FAULT_STATUSES {
        let (word, fill) = (status.as_str(), fault_fill(status));
        let _ = writeln!(
            css,
            "#timeline .bar.fault.{word} {{ fill: {fill}; }}\n.swatch.fault-{word} {{ background: {fill}; }}"
        );
    }
    for verdict in VERDICTS {
        let (word, fill) = (verdict.as_str(), mark_fill(verdict));
        let _ = writeln!(
            css,
            "#timeline .mark.{word} {{ fill: {fill}; }}\n.swatch.mark-{word} {{ background: {fill}; }}"
        );
    }
    let _ = writeln!(
        css,
        "#timeline .bar.wait {{ fill: {WAIT_FILL}; }}\n.swatch.wait {{ background: {WAIT_FILL}; }}\n\
         #timeline .bar.probe {{ fill: {PROBE_FILL}; }}\n.swatch.probe {{ background: {PROBE_FILL}; }}\n\
         #timeline .span {{ fill: {SPAN_FILL}; }}\n\
         #timeline .window {{ fill: {WINDOW_FILL}; fill-opacity: 0.6; }}\n\
         #timeline .tick {{ stroke: {GRID}; }}"
    );
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_verdict_has_its_own_colour_in_the_style_sheet() {
        let css = timeline_css();
        let mut fills: Vec<&str> = FAULT_STATUSES.iter().map(|s| fault_fill(*s)).collect();
        fills.extend(VERDICTS.iter().map(|v| mark_fill(*v)));
        fills.extend([WAIT_FILL, PROBE_FILL, SPAN_FILL, WINDOW_FILL, GRID]);
        for fill in &fills {
            assert!(css.contains(fill), "{fill} missing");
        }
        let mut distinct = fills.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), fills.len(), "two things share a colour");
        assert!(css.contains("#timeline .bar.fault.completed-with-error { fill: #fb8c00; }"));
        assert!(css.contains(".swatch.mark-not-applicable { background: #757575; }"));
    }
}
