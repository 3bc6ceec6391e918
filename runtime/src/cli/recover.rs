//! `faultline recover`: undo what crashed runs left in the journal.

use super::{EXIT_OK, EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::host::HostConfig;
use crate::host::recover::{Recovery, recover};
use std::io::Write;
use std::path::Path;

/// Runs `faultline recover`.
pub async fn run(state_dir: &Path, out: &mut dyn Write) -> u8 {
    let Ok(host) = super::start_host(HostConfig::new(state_dir.to_path_buf()), out) else {
        return EXIT_USAGE;
    };
    let report = match recover(&host).await {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: recovery failed: {e:#}");
            return EXIT_REVERT_FAILED;
        }
    };
    if print_report(&report, out) {
        EXIT_OK
    } else {
        EXIT_REVERT_FAILED
    }
}

/// Prints what recovery did; returns whether every change was undone.
pub(super) fn print_report(report: &Recovery, out: &mut dyn Write) -> bool {
    for p in &report.problems {
        let _ = writeln!(out, "warning: unreadable journal line skipped: {p}");
    }
    let _ = writeln!(
        out,
        "recovered {} journal(s): {} change(s) undone, {} already undone by a reboot",
        report.journals, report.undone, report.dropped_after_reboot
    );
    if report.failures.is_empty() {
        return true;
    }
    let _ = writeln!(
        out,
        "REVERT FAILED for {} change(s), kept in the journal:",
        report.failures.len()
    );
    for f in &report.failures {
        let _ = writeln!(out, "  - {f}");
    }
    false
}
