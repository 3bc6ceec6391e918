//! Durable undo journal: the inverse of every change is written, and fsynced, before the change
//! touches the system, so a crash at any point leaves enough on disk to undo it.
//!
//! Each process owns one journal file in the state directory and holds an exclusive `flock` on it
//! while it lives. A file nobody holds belongs to a process that died: [`orphans`] finds those
//! for recovery. A file is a sequence of lines `<crc32 hex> <json record>`; a torn last line (a
//! crash mid-write) is ignored, any other bad line is reported and skipped.
//!
//! The journal knows nothing of capabilities: an inverse is an opaque JSON value.

use anyhow::{Context as _, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Identifies a journal entry; the contract calls it a `change`.
pub type EntryId = u64;

/// One recorded change and how to undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique within the journal file.
    pub id: EntryId,
    /// The execution that made the change.
    pub execution: String,
    /// The plug-in that asked for it (`name@version` or a digest).
    pub plugin: String,
    /// The boot the change was made in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// When the entry was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// One line on what changed, for people.
    pub summary: String,
    /// How to undo it, as the capability that made it understands it.
    pub inverse: serde_json::Value,
    /// Whether the change is known to have been made (otherwise a crash may have come first).
    pub applied: bool,
    /// The last reason undoing it failed, if it did.
    pub undo_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Record {
    Begin(Entry),
    Applied { id: EntryId },
    Undone { id: EntryId },
    UndoFailed { id: EntryId, reason: String },
}

/// A line of a journal file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// A journal file owned (locked) by this process.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    boot: String,
    inner: Mutex<Inner>,
    /// A second handle on the same file, for fsync outside the lock: a sync covers every byte
    /// written before it, so no writer needs to hold the lock while the disk catches up.
    sync: File,
    /// Records written so far (counted under `inner`'s lock, after each write).
    written: AtomicU64,
    /// Group commit: writers that need their record durable while another writer's sync is
    /// under way wait for it to end, and the next sync covers all of them. A thousand
    /// concurrent undos cost a handful of syncs instead of a thousand in a row.
    synced: Mutex<Synced>,
    sync_done: Condvar,
    /// Syncs done, for the tests of group commit.
    syncs: AtomicU64,
}

/// How far the journal is known to be on disk.
#[derive(Debug, Default)]
struct Synced {
    /// Every record up to this count is durable.
    upto: u64,
    /// A writer is syncing now (without holding the mutex).
    running: bool,
}

#[derive(Debug)]
struct Inner {
    file: Flock<File>,
    next_id: EntryId,
    entries: BTreeMap<EntryId, Entry>,
}

/// The current boot's id; changes from another boot may have been undone by the reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock(file: File, path: &Path) -> Result<Option<Flock<File>>> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
    }
}

impl Journal {
    /// Creates a new journal file for this process in `dir` and locks it.
    pub fn create(dir: &Path) -> Result<Journal> {
        Journal::create_for_boot(dir, &boot_id())
    }

    /// Like [`Journal::create`], recording `boot` as the boot its changes were made in: how a
    /// test stands in for a journal written before a reboot.
    pub fn create_for_boot(dir: &Path, boot: &str) -> Result<Journal> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create state directory {}", dir.display()))?;
        let name = format!(
            "{}-{}-{:08x}.journal",
            now_ms(),
            std::process::id(),
            rand::random::<u32>()
        );
        let path = dir.join(&name);
        // Locked under a name recovery ignores, then renamed: another process recovering at
        // the same moment never sees an unlocked `.journal` of a living process (and never
        // takes its lock first).
        let fresh = dir.join(format!("{name}.new"));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&fresh)
            .with_context(|| format!("failed to create journal {}", fresh.display()))?;
        let Some(file) = lock(file, &fresh)? else {
            bail!("journal {} is locked by another process", fresh.display());
        };
        std::fs::rename(&fresh, &path)
            .with_context(|| format!("failed to name journal {}", path.display()))?;
        sync_dir(dir)?;
        let sync = file
            .try_clone()
            .with_context(|| format!("failed to open {} twice", path.display()))?;
        Ok(Journal {
            path,
            sync,
            written: AtomicU64::new(0),
            synced: Mutex::default(),
            sync_done: Condvar::new(),
            syncs: AtomicU64::new(0),
            boot: boot.to_string(),
            inner: Mutex::new(Inner {
                file,
                next_id: 1,
                entries: BTreeMap::new(),
            }),
        })
    }

    /// Makes records durable. Called without the lock held: the journal is written from the
    /// blocking pool, and a slow disk must not stall other writers.
    ///
    /// Returns once the first `upto` records are durable: at once when a sync since they were
    /// written covered them; else it waits for the sync under way (the mutex is never held
    /// across the sync itself), or syncs everything written so far itself.
    fn flush(&self, upto: u64) -> Result<()> {
        let mut synced = self.synced_state()?;
        loop {
            if synced.upto >= upto {
                return Ok(());
            }
            if synced.running {
                synced = self
                    .sync_done
                    .wait(synced)
                    .map_err(|_| anyhow::anyhow!("journal sync state poisoned"))?;
                continue;
            }
            synced.running = true;
            // Every record counted now was written before the sync starts, so it covers them.
            let covers = self.written.load(Ordering::Acquire);
            drop(synced);
            let result = self.sync.sync_data();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            synced = self.synced_state()?;
            synced.running = false;
            if result.is_ok() {
                synced.upto = synced.upto.max(covers);
            }
            self.sync_done.notify_all();
            result.context("failed to sync the journal")?;
        }
    }

    fn synced_state(&self) -> Result<std::sync::MutexGuard<'_, Synced>> {
        self.synced
            .lock()
            .map_err(|_| anyhow::anyhow!("journal sync state poisoned"))
    }

    /// Writes `record` and counts it; returns its count, for [`Journal::flush`].
    fn write(&self, inner: &mut Inner, record: &Record) -> Result<u64> {
        write_record(&mut inner.file, record)?;
        Ok(self.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Whether a thread panicked while holding the journal's lock: its in-memory state may be
    /// half-updated, so a host must never report itself clean.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| anyhow::anyhow!("journal lock poisoned"))
    }

    /// Records the inverse of a change about to be made, durably. Call before touching the
    /// system; then [`Journal::applied`] after.
    pub fn begin(
        &self,
        execution: &str,
        plugin: &str,
        summary: &str,
        inverse: serde_json::Value,
    ) -> Result<EntryId> {
        let mut inner = self.inner()?;
        let id = inner.next_id;
        let entry = Entry {
            id,
            execution: execution.to_string(),
            plugin: plugin.to_string(),
            boot_id: self.boot.clone(),
            created_ms: now_ms(),
            summary: summary.to_string(),
            inverse,
            applied: false,
            undo_error: None,
        };
        let seq = self.write(&mut inner, &Record::Begin(entry.clone()))?;
        inner.next_id += 1;
        inner.entries.insert(id, entry);
        drop(inner);
        self.flush(seq)?;
        Ok(id)
    }

    /// Marks a change as made. Not fsynced: undoing is idempotent, so a lost mark costs nothing.
    pub fn applied(&self, id: EntryId) -> Result<()> {
        let mut inner = self.inner()?;
        self.write(&mut inner, &Record::Applied { id })?;
        if let Some(e) = inner.entries.get_mut(&id) {
            e.applied = true;
        }
        Ok(())
    }

    /// Marks a change as undone (or never made): recovery will not touch it again.
    pub fn undone(&self, id: EntryId) -> Result<()> {
        let mut inner = self.inner()?;
        let seq = self.write(&mut inner, &Record::Undone { id })?;
        inner.entries.remove(&id);
        if inner.entries.is_empty() {
            // Nothing outstanding: start the file afresh so it never grows without bound.
            inner
                .file
                .set_len(0)
                .context("failed to truncate the journal")?;
        }
        drop(inner);
        self.flush(seq)
    }

    /// Records that undoing failed; the entry stays for a later recovery to retry.
    pub fn undo_failed(&self, id: EntryId, reason: &str) -> Result<()> {
        let mut inner = self.inner()?;
        let record = Record::UndoFailed {
            id,
            reason: reason.to_string(),
        };
        let seq = self.write(&mut inner, &record)?;
        if let Some(e) = inner.entries.get_mut(&id) {
            e.undo_error = Some(reason.to_string());
        }
        drop(inner);
        self.flush(seq)
    }

    /// One entry, if it is still outstanding.
    pub fn get(&self, id: EntryId) -> Option<Entry> {
        self.inner().ok()?.entries.get(&id).cloned()
    }

    /// Outstanding entries, newest first; only `execution`'s when given.
    pub fn outstanding(&self, execution: Option<&str>) -> Vec<Entry> {
        let Ok(inner) = self.inner() else {
            return Vec::new();
        };
        inner
            .entries
            .values()
            .rev()
            .filter(|e| execution.is_none_or(|x| e.execution == x))
            .cloned()
            .collect()
    }

    /// Adopts an orphan's outstanding entries (with fresh ids) so a failed undo stays journalled
    /// by a living process; returns the new ids, newest first.
    pub fn adopt(&self, entries: &[Entry]) -> Result<Vec<EntryId>> {
        let mut ids = Vec::new();
        for e in entries.iter().rev() {
            let id = self.begin(&e.execution, &e.plugin, &e.summary, e.inverse.clone())?;
            let mut inner = self.inner()?;
            if let Some(new) = inner.entries.get_mut(&id) {
                new.boot_id = e.boot_id.clone();
                new.applied = e.applied;
            }
            ids.push(id);
        }
        ids.reverse();
        Ok(ids)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // A journal with nothing outstanding is of no use to recovery: remove it.
        if let Ok(inner) = self.inner.get_mut()
            && inner.entries.is_empty()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn write_record(file: &mut File, record: &Record) -> Result<()> {
    let json = serde_json::to_string(record).context("failed to encode a journal record")?;
    let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
    file.write_all(line.as_bytes())
        .context("failed to write the journal")
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync directory {}", dir.display()))
}

/// Reads a journal file: its outstanding entries (oldest first) and the lines it could not read.
pub fn read(path: &Path) -> Result<(Vec<Entry>, Vec<Problem>)> {
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let lines: Vec<_> = BufReader::new(file).split(b'\n').collect();
    let count = lines.len();
    let mut entries: BTreeMap<EntryId, Entry> = BTreeMap::new();
    let mut problems = Vec::new();
    let records = lines
        .iter()
        .filter(|l| l.as_ref().is_ok_and(|l| !l.is_empty()))
        .count();
    for (i, line) in lines.into_iter().enumerate() {
        let problem = |reason: String| Problem {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                problems.push(problem(format!("unreadable: {e}")));
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(Record::Begin(e)) => {
                entries.insert(e.id, e);
            }
            Ok(Record::Applied { id }) => {
                if let Some(e) = entries.get_mut(&id) {
                    e.applied = true;
                }
            }
            Ok(Record::Undone { id }) => {
                entries.remove(&id);
            }
            Ok(Record::UndoFailed { id, reason }) => {
                if let Some(e) = entries.get_mut(&id) {
                    e.undo_error = Some(reason);
                }
            }
            // A torn last line is what a crash mid-write leaves: the change it began was not
            // made yet (the record is written first), so there is nothing to undo for it. But
            // when it is the file's only record, nothing readable vouches for that: say so.
            Err(reason) if i + 1 == count => {
                if records == 1 {
                    problems.push(problem(format!(
                        "the journal's only record is cut short ({reason}); it cannot be read, so \
                         whether a change was in progress is unknown"
                    )));
                }
            }
            Err(reason) => problems.push(problem(reason)),
        }
    }
    Ok((entries.into_values().collect(), problems))
}

fn parse_line(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let (crc, json) = text
        .split_once(' ')
        .ok_or_else(|| "no checksum".to_string())?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum field {crc:?}"))?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return Err("checksum mismatch (corrupt record)".to_string());
    }
    serde_json::from_str(json).map_err(|e| format!("bad record: {e}"))
}

/// A journal file left by a process that is gone; locked by us while we hold it.
#[derive(Debug)]
pub struct Orphan {
    /// The file.
    pub path: PathBuf,
    /// Its outstanding entries, oldest first.
    pub entries: Vec<Entry>,
    /// Lines that could not be read.
    pub problems: Vec<Problem>,
    _lock: Flock<File>,
}

impl Orphan {
    /// Renames the file (a journal with unreadable lines, kept for a person).
    pub fn set_aside(self, to: &Path) -> Result<()> {
        std::fs::rename(&self.path, to)
            .with_context(|| format!("failed to move {} aside", self.path.display()))
    }

    /// Deletes the file once every entry is dealt with.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path)
            .with_context(|| format!("failed to remove {}", self.path.display()))
    }
}

/// Journal files in `dir` whose owner is gone (no lock held), locked for recovery.
pub fn orphans(dir: &Path) -> Result<Vec<Orphan>> {
    let read_dir = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = read_dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    paths.sort();
    let mut found = Vec::new();
    for path in paths {
        let Ok(file) = OpenOptions::new().read(true).append(true).open(&path) else {
            continue;
        };
        let Some(lock) = lock(file, &path)? else {
            continue; // a living process owns it
        };
        let (entries, problems) = read(&path)?;
        found.push(Orphan {
            path,
            entries,
            problems,
            _lock: lock,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_syncs_and_every_record_is_on_disk_when_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::create(dir.path()).unwrap());
        let ids: Vec<EntryId> = (0..400)
            .map(|i| {
                j.begin("e", "p", "c", serde_json::json!({ "i": i }))
                    .unwrap()
            })
            .collect();
        let before = j.syncs.load(Ordering::Relaxed);
        assert_eq!(before, 400, "one sync per begin when nobody else writes");
        // Undo 399 of them from 16 threads at once: each returns only once its record is
        // durable, and they share the syncs.
        std::thread::scope(|scope| {
            for chunk in ids[1..].chunks(25) {
                let j = j.clone();
                scope.spawn(move || {
                    for id in chunk {
                        j.undone(*id).unwrap();
                    }
                });
            }
        });
        let syncs = j.syncs.load(Ordering::Relaxed) - before;
        assert!(
            syncs <= 399,
            "{syncs} syncs for 399 undos: more than one each"
        );
        assert_eq!(j.written.load(Ordering::Relaxed), 799);
        // What a crash would leave: the one entry not undone.
        let path = j.path().to_path_buf();
        let (entries, problems) = read(&path).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[0]]
        );
        eprintln!("399 concurrent undos from 16 threads: {syncs} syncs");
    }

    #[test]
    fn a_writer_waits_for_the_sync_under_way_and_does_not_sync_again_when_it_covered_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::create(dir.path()).unwrap());
        // Another writer's sync is under way (as `flush` marks it before it syncs).
        j.synced.lock().unwrap().running = true;
        let before = j.syncs.load(Ordering::Relaxed);
        let writer = {
            let j = j.clone();
            std::thread::spawn(move || j.begin("e", "p", "c", serde_json::json!(1)).unwrap())
        };
        // The record is written, and the writer waits instead of syncing.
        while j.written.load(Ordering::Acquire) < 1 {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !writer.is_finished(),
            "returned before its record was durable"
        );
        assert_eq!(
            j.syncs.load(Ordering::Relaxed),
            before,
            "synced beside the other sync"
        );
        // That sync ends, covering the record: the writer returns without a sync of its own.
        j.sync.sync_data().unwrap();
        {
            let mut s = j.synced.lock().unwrap();
            s.running = false;
            s.upto = 1;
        }
        j.sync_done.notify_all();
        writer.join().unwrap();
        assert_eq!(j.syncs.load(Ordering::Relaxed), before);
    }

    #[test]
    fn entries_survive_a_crash_and_undone_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path()).unwrap();
        let a = j
            .begin("e1", "p", "a", serde_json::json!({"k": 1}))
            .unwrap();
        let b = j
            .begin("e1", "p", "b", serde_json::json!({"k": 2}))
            .unwrap();
        j.applied(a).unwrap();
        j.undone(b).unwrap();
        let path = j.path().to_path_buf();
        std::mem::forget(j); // a crash: no Drop runs, the file keeps every record
        let (entries, problems) = read(&path).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, a);
        assert!(entries[0].applied);
        assert_eq!(entries[0].inverse, serde_json::json!({"k": 1}));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_corrupt_one_reported() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path()).unwrap();
        j.begin("e", "p", "a", serde_json::json!(1)).unwrap();
        j.begin("e", "p", "b", serde_json::json!(2)).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        // Flip a byte inside the first record and tear the last one.
        let mut bytes = text.into_bytes();
        let pos = bytes.iter().position(|&b| b == b'"').unwrap() + 1;
        bytes[pos] ^= 0x01;
        let cut = bytes.len() - 10;
        bytes.truncate(cut);
        std::fs::write(&path, &bytes).unwrap();
        let (entries, problems) = read(&path).unwrap();
        assert!(entries.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 1);
        assert!(problems[0].reason.contains("checksum"), "{}", problems[0]);
    }

    #[test]
    fn a_journal_whose_only_record_is_cut_short_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path()).unwrap();
        j.begin("e", "p", "a", serde_json::json!(1)).unwrap();
        let path = j.path().to_path_buf();
        std::mem::forget(j);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let (entries, problems) = read(&path).unwrap();
        assert!(entries.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].reason.contains("only record is cut short"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_living_journal_is_not_an_orphan_and_a_dead_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let live = Journal::create(dir.path()).unwrap();
        live.begin("e", "p", "a", serde_json::json!(1)).unwrap();
        assert!(orphans(dir.path()).unwrap().is_empty());
        let path = live.path().to_path_buf();
        drop(live); // outstanding entry: the file stays, unlocked
        let found = orphans(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, path);
        assert_eq!(found[0].entries.len(), 1);
    }

    #[test]
    fn an_empty_journal_removes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path()).unwrap();
        let id = j.begin("e", "p", "a", serde_json::json!(1)).unwrap();
        j.undone(id).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        assert!(!path.exists());
    }
}
