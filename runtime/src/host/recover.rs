//! Recovery: before an agent accepts work, it undoes what dead runs left in their journals.
//!
//! A journal file whose owner is gone (its `flock` is free) is an orphan. Each outstanding
//! entry is undone, newest first. An entry from an earlier boot is first checked: what the reboot
//! already undid (processes, namespaces, non-persistent state) is dropped. An entry that cannot
//! be undone is adopted into this host's journal, so the next recovery retries it, and reported
//! with the manual steps.

use super::Host;
use crate::capability::Inverse;
use crate::capability::{Backends, Change};
use crate::journal::Journal;
use crate::journal::{self, Problem};
use std::path::Path;

/// What recovery did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Journal files recovered.
    pub journals: usize,
    /// Changes undone.
    pub undone: usize,
    /// Changes a reboot had already undone.
    pub dropped_after_reboot: usize,
    /// Changes that could not be undone, with manual steps; kept in the journal.
    pub failures: Vec<String>,
    /// Unreadable journal lines.
    pub problems: Vec<Problem>,
}

/// Undoes every orphaned journal entry under the host's state directory, on the blocking pool.
pub async fn recover(host: &Host) -> anyhow::Result<Recovery> {
    let dir = host.config().state_dir.join("journal");
    let (journal, backends) = (host.journal().clone(), host.backends().clone());
    tokio::task::spawn_blocking(move || recover_dir(&dir, &journal, &backends))
        .await
        .map_err(|e| anyhow::anyhow!("recovery panicked: {e}"))?
}

fn recover_dir(dir: &Path, journal: &Journal, backends: &Backends) -> anyhow::Result<Recovery> {
    let mut report = Recovery::default();
    let boot = journal::boot_id();
    for orphan in journal::orphans(dir)? {
        report.journals += 1;
        report.problems.extend(orphan.problems.iter().cloned());
        let mut keep = Vec::new();
        for entry in orphan.entries.iter().rev() {
            let inverse: Option<Inverse> = serde_json::from_value(entry.inverse.clone()).ok();
            if entry.boot_id != boot && inverse.as_ref().is_some_and(|i| !i.is_present(backends)) {
                tracing::info!("dropped after reboot: {}", entry.summary);
                report.dropped_after_reboot += 1;
                continue;
            }
            match backends.undo_json(&entry.inverse) {
                Ok(()) => {
                    tracing::info!("recovered: undid {}", entry.summary);
                    report.undone += 1;
                }
                Err(e) => {
                    report.failures.push(format!(
                        "{} (from {}): {e}; undo by hand: {}",
                        entry.summary,
                        orphan.path.display(),
                        backends.manual_steps_json(&entry.inverse)
                    ));
                    keep.push(entry.clone());
                }
            }
        }
        // Failed entries move to our own journal before the orphan goes, so nothing is lost.
        keep.reverse();
        journal.adopt(&keep)?;
        if orphan.problems.is_empty() {
            orphan.remove()?;
        } else {
            // An unreadable line may have recorded a change that is still in place: keep the
            // file for a person, out of the way of the next recovery, and do not claim success.
            let kept = orphan.path.with_extension("journal.corrupt");
            report.failures.push(format!(
                "{} has {} unreadable line(s); a change recorded there may still be in place: inspect {}",
                orphan.path.display(),
                orphan.problems.len(),
                kept.display()
            ));
            orphan.set_aside(&kept)?;
        }
    }
    Ok(report)
}
