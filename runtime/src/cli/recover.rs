//! `faultline recover`: undo what crashed runs left in the journal.

use super::{EXIT_OK, EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::host::{Host, HostConfig, recover::recover, tracing_log};
use std::io::Write;
use std::path::Path;

/// Runs `faultline recover`.
pub async fn run(state_dir: &Path, out: &mut dyn Write) -> u8 {
    let host = match Host::new(HostConfig::new(state_dir.to_path_buf()), tracing_log()) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(out, "error: cannot start the host: {e:#}");
            return EXIT_USAGE;
        }
    };
    let report = match recover(&host) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "error: recovery failed: {e:#}");
            return EXIT_REVERT_FAILED;
        }
    };
    for p in &report.problems {
        let _ = writeln!(out, "warning: unreadable journal line skipped: {p}");
    }
    let _ = writeln!(
        out,
        "recovered {} journal(s): {} change(s) undone, {} already undone by a reboot",
        report.journals, report.undone, report.dropped_after_reboot
    );
    if report.failures.is_empty() {
        return EXIT_OK;
    }
    let _ = writeln!(
        out,
        "REVERT FAILED for {} change(s):",
        report.failures.len()
    );
    for f in &report.failures {
        let _ = writeln!(out, "  - {f}");
    }
    EXIT_REVERT_FAILED
}
