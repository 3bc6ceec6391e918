//! The history: every run's [`Record`] and log in one SQLite file,
//! `<state_dir>/history.sqlite` ([`history_path`]).
//!
//! - **Several processes at once.** The file is in WAL mode: readers never wait for the writer
//!   and the writer never waits for readers. Every write is one `BEGIN IMMEDIATE` transaction,
//!   so a second writer waits for the write lock (up to [`BUSY_TIMEOUT`]) instead of failing
//!   with `SQLITE_BUSY` when a read-then-write transaction could not be upgraded.
//! - **Durability: `synchronous=NORMAL`.** In WAL mode a commit is then safe from a crash or a
//!   kill of any process (what the orphan rule below is about); only a power loss can lose the
//!   last commits before a checkpoint, never corrupt the file. `FULL` would fsync every log
//!   batch of a run; the history is not what undoes faults (the journal is, and it fsyncs),
//!   so it does not pay for that.
//! - **Schema migrations** with `rusqlite_migration` (the version is SQLite's `user_version`);
//!   a file written by a newer faultline is refused ([`StoreError::NewerSchema`]), a file that
//!   is not a SQLite database or another program's is refused naming its path
//!   ([`StoreError::NotAHistory`]).
//! - **No run stays `running` forever.** [`Store::open`] closes every run still queued or
//!   running whose process is gone (another boot, or no process with its pid and start time)
//!   as `error`/`ERRORED`, with the reason. A run of a live process is left alone.
//! - **Bounded.** Ids are at most [`MAX_ID`] bytes of letters, digits, `-` and `_`; a record is
//!   at most [`MAX_RECORD`] bytes of JSON; a log line at most [`MAX_LINE`] bytes (longer ones
//!   are cut); a run's log at most [`MAX_LOG_LINES`] lines, the rest counted in one final line.
//!
//! Every call is synchronous file I/O (and `/proc` reads in [`Store::open`]): async callers run
//! it with `tokio::task::spawn_blocking`. Each call opens its own connection, so a [`Store`] is
//! cheap to clone and to send to the blocking pool.

use super::record::{EndState, LogEntry, Record, Source, Status};
use anyhow::{Context as _, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations, SchemaVersion};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a call waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest execution id, in bytes.
pub const MAX_ID: usize = 64;
/// Largest record, in bytes of JSON.
pub const MAX_RECORD: usize = 16 << 20;
/// Longest log line kept, in bytes; a longer one is cut and ends with `…`.
pub const MAX_LINE: usize = 8 << 10;
/// Most lines kept in one run's log; the rest are counted in a final line.
pub const MAX_LOG_LINES: u64 = 100_000;
/// Most runs [`Store::list`] returns.
pub const MAX_LIST: usize = 10_000;
/// The history's file name in the state directory.
pub const HISTORY_FILE: &str = "history.sqlite";

/// `PRAGMA application_id` of a history file ("FLTH"): tells ours from another program's
/// SQLite file.
const APPLICATION_ID: i64 = 0x464c_5448;
/// Longest step name and level kept in a log line.
const MAX_STEP: usize = 256;
const MAX_LEVEL: usize = 16;

/// The schema, one migration per version; never edit one that shipped, add the next. Two
/// processes migrating at once take turns on the write lock; the second's migration fails (the
/// tables are there) and [`Store::open`] then finds the file at this version and goes on.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE executions (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        end_state TEXT,
        score REAL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        owner_pid INTEGER NOT NULL,
        owner_start INTEGER NOT NULL,
        boot_id TEXT NOT NULL,
        record TEXT NOT NULL
    ) STRICT;
    CREATE INDEX executions_started ON executions (started_ms DESC, id DESC);
    CREATE INDEX executions_status ON executions (status);
    CREATE INDEX executions_name ON executions (name, started_ms);
    -- The primary key is the index: one run's lines, in order.
    CREATE TABLE log (
        execution TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        level TEXT NOT NULL,
        step TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (execution, seq)
    ) STRICT, WITHOUT ROWID;
    -- Lines past MAX_LOG_LINES: how many, and the time of the last.
    CREATE TABLE log_overflow (
        execution TEXT PRIMARY KEY NOT NULL,
        dropped INTEGER NOT NULL,
        last_ms INTEGER NOT NULL
    ) STRICT;
    PRAGMA application_id = 1179407432;",
    ),
    // 2: the team that owns a run (the experiment's `team:`), so a list filters by it.
    M::up(
        "ALTER TABLE executions ADD COLUMN team TEXT;
    UPDATE executions SET team = json_extract(record, '$.team');
    CREATE INDEX executions_team ON executions (team, started_ms DESC, id DESC);",
    ),
];

/// What callers may branch on; everything else is an `anyhow` chain naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file's schema is newer than this binary knows.
    #[error(
        "the history at {path} has schema version {found}, newer than this faultline knows \
         ({known}): use a newer faultline, or another --state-dir"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: usize,
        /// The newest this binary knows.
        known: usize,
    },
    /// The file is not a SQLite database, is damaged, or is another program's.
    #[error("{path} is not a faultline history: {why}")]
    NotAHistory {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// An execution id that cannot be one (too long, odd characters).
    #[error("bad execution id {shown}: {why}")]
    BadId {
        /// The id, quoted and cut short.
        shown: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Where the history lives in a state directory.
pub fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join(HISTORY_FILE)
}

/// One line of `faultline executions list`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The id.
    pub id: String,
    /// The experiment's name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// Its end state, once final (`COMPLETED`, …).
    pub end_state: Option<String>,
    /// The resilience score.
    pub score: Option<f64>,
    /// Started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Ended.
    pub ended_ms: Option<u64>,
    /// The team that owns it, if its experiment names one.
    pub team: Option<String>,
}

impl Summary {
    /// The summary of a record (of a run still going, say).
    pub fn of(record: &Record) -> Summary {
        Summary {
            id: record.id.clone(),
            name: record.name.clone(),
            status: record.status,
            end_state: record.end_state.map(|e| e.as_str().to_string()),
            score: record.score,
            started_ms: record.started_ms,
            ended_ms: record.ended_ms,
            team: record.team.clone(),
        }
    }
}

/// Which runs [`Store::list_of`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teams<'a> {
    /// Every run.
    All,
    /// Only runs of this team (a run without a team belongs to none).
    Only(&'a str),
}

/// The process running a run, as a [`Record`] keeps it (`owner_pid`, `owner_start`,
/// `boot_id`), so a crashed run can be told from a live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
    /// The boot it runs in.
    pub boot_id: String,
}

impl Owner {
    /// This process (reads `/proc`: sync). Start time 0 when `/proc` cannot tell, which no
    /// live process matches, so such a run is closed as orphaned by the next open.
    pub fn this_process() -> Owner {
        let pid = std::process::id();
        Owner::of(pid).unwrap_or(Owner {
            pid,
            start: 0,
            boot_id: crate::journal::boot_id(),
        })
    }

    /// Live process `pid` as an owner; `None` when there is none (reads `/proc`: sync).
    pub fn of(pid: u32) -> Option<Owner> {
        Some(Owner {
            pid,
            start: start_time(pid)?,
            boot_id: crate::journal::boot_id(),
        })
    }

    /// Whether this owner still runs: same boot, and a live process (not a zombie) with its
    /// pid and start time.
    pub fn is_alive(&self) -> bool {
        self.boot_id == crate::journal::boot_id() && start_time(self.pid) == Some(self.start)
    }
}

/// The start time of live process `pid`; `None` when there is none (or a zombie, or a thread).
#[cfg(target_os = "linux")]
fn start_time(pid: u32) -> Option<u64> {
    crate::capability::process::linux::info(pid)
        .filter(|p| p.tgid == pid && !matches!(p.state, 'Z' | 'X'))
        .map(|p| p.start_time)
}

#[cfg(not(target_os = "linux"))]
fn start_time(_pid: u32) -> Option<u64> {
    None
}

/// The history file. Cheap to clone; every call opens its own connection (callers run them
/// on the blocking pool).
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// Opens (creating and migrating) the history at `path`, and closes as errored every run
    /// still `running` (or `queued`) whose process is gone. Creates the parent directory with
    /// mode 0700 when missing. Sync.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .with_context(|| {
                    format!(
                        "failed to create the history's directory {}",
                        parent.display()
                    )
                })?;
        }
        let store = Store {
            path: path.to_path_buf(),
        };
        let mut conn = store.connect(OpenFlags::SQLITE_OPEN_CREATE)?;
        store.check_file(&conn)?;
        let mode: String = retry_busy(|| {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        })
        .map_err(|e| store.not_a_history(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!(
                "the history at {} cannot use WAL mode (SQLite kept {mode:?}): is it on a network file system?",
                path.display()
            );
        }
        store.migrate(&mut conn)?;
        store.close_orphans(&mut conn)?;
        Ok(store)
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces a run's record. Sync.
    pub fn save(&self, record: &Record) -> Result<()> {
        check_id(&record.id)?;
        let json = serde_json::to_string(record).context("failed to encode the record")?;
        if json.len() > MAX_RECORD {
            anyhow::bail!(
                "the record of {} is {} bytes of JSON, more than the history keeps ({MAX_RECORD})",
                record.id,
                json.len()
            );
        }
        let mut conn = self.connect(OpenFlags::empty())?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| self.failed("begin a write"))?;
        tx.execute(
            "INSERT INTO executions
                (id, name, status, end_state, score, started_ms, ended_ms,
                 owner_pid, owner_start, boot_id, record, team)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET
                name = excluded.name, status = excluded.status,
                end_state = excluded.end_state, score = excluded.score,
                started_ms = excluded.started_ms, ended_ms = excluded.ended_ms,
                owner_pid = excluded.owner_pid, owner_start = excluded.owner_start,
                boot_id = excluded.boot_id, record = excluded.record, team = excluded.team",
            params![
                record.id,
                record.name,
                record.status.as_str(),
                record.end_state.map(EndState::as_str),
                record.score.filter(|s| s.is_finite()),
                record.started_ms,
                record.ended_ms,
                record.owner_pid,
                record.owner_start,
                record.boot_id,
                json,
                record.team,
            ],
        )
        .with_context(|| self.failed(&format!("save the record of {}", record.id)))?;
        tx.commit()
            .with_context(|| self.failed(&format!("save the record of {}", record.id)))
    }

    /// Appends lines to a run's log, in one transaction. Lines past [`MAX_LOG_LINES`] are not
    /// kept but counted; [`Store::log`] ends with a line saying how many. Sync.
    pub fn append_log(&self, id: &str, entries: &[LogEntry]) -> Result<()> {
        check_id(id)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.connect(OpenFlags::empty())?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| self.failed("begin a write"))?;
        let next: u64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM log WHERE execution = ?1",
                [id],
                |row| row.get(0),
            )
            .with_context(|| self.failed(&format!("read the log of {id}")))?;
        let room = usize::try_from(MAX_LOG_LINES.saturating_sub(next)).unwrap_or(usize::MAX);
        let (kept, dropped) = entries.split_at(room.min(entries.len()));
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO log (execution, seq, at_ms, source, level, step, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .with_context(|| self.failed("prepare a log write"))?;
            for (seq, e) in (next..).zip(kept) {
                insert
                    .execute(params![
                        id,
                        seq,
                        e.at_ms,
                        source_name(e.source),
                        clip(&e.level, MAX_LEVEL),
                        e.step.as_deref().map(|s| clip(s, MAX_STEP)),
                        clip(&e.message, MAX_LINE),
                    ])
                    .with_context(|| self.failed(&format!("append to the log of {id}")))?;
            }
        }
        if let Some(last) = dropped.iter().map(|e| e.at_ms).max() {
            tx.execute(
                "INSERT INTO log_overflow (execution, dropped, last_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (execution) DO UPDATE SET
                    dropped = dropped + excluded.dropped,
                    last_ms = MAX(last_ms, excluded.last_ms)",
                params![id, dropped.len(), last],
            )
            .with_context(|| self.failed(&format!("count the dropped lines of {id}")))?;
        }
        tx.commit()
            .with_context(|| self.failed(&format!("append to the log of {id}")))
    }

    /// The newest `limit` runs (at most [`MAX_LIST`]), newest first. Sync.
    pub fn list(&self, limit: usize) -> Result<Vec<Summary>> {
        self.list_of(limit, Teams::All)
    }

    /// The newest `limit` runs (at most [`MAX_LIST`]) of `teams`, newest first. Sync.
    pub fn list_of(&self, limit: usize, teams: Teams<'_>) -> Result<Vec<Summary>> {
        let conn = self.connect(OpenFlags::empty())?;
        let team = match teams {
            Teams::All => None,
            Teams::Only(t) => Some(t),
        };
        let mut query = conn
            .prepare(
                "SELECT id, name, status, end_state, score, started_ms, ended_ms, team
                 FROM executions WHERE ?2 IS NULL OR team = ?2
                 ORDER BY started_ms DESC, id DESC LIMIT ?1",
            )
            .with_context(|| self.failed("list the runs"))?;
        let rows = query
            .query_map(params![limit.min(MAX_LIST), team], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<f64>>(4)?,
                    row.get::<_, u64>(5)?,
                    row.get::<_, Option<u64>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ))
            })
            .with_context(|| self.failed("list the runs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, status, end_state, score, started_ms, ended_ms, team) =
                row.with_context(|| self.failed("list the runs"))?;
            let status = Status::parse(&status).ok_or_else(|| {
                self.damaged(format!("run {id} has an unknown status {status:?}"))
            })?;
            out.push(Summary {
                id,
                name,
                status,
                end_state,
                score,
                started_ms,
                ended_ms,
                team,
            });
        }
        Ok(out)
    }

    /// One run's record; `None` when the history has no run with this id. Sync.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        check_id(id)?;
        let conn = self.connect(OpenFlags::empty())?;
        let json: Option<String> = conn
            .query_row("SELECT record FROM executions WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .with_context(|| self.failed(&format!("read the record of {id}")))?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| self.damaged(format!("the record of {id} cannot be read: {e}")))
        })
        .transpose()
    }

    /// One run's log, in order; empty when it has none. Sync.
    pub fn log(&self, id: &str) -> Result<Vec<LogEntry>> {
        check_id(id)?;
        let conn = self.connect(OpenFlags::empty())?;
        let mut query = conn
            .prepare(
                "SELECT seq, at_ms, source, level, step, message FROM log
                 WHERE execution = ?1 ORDER BY seq",
            )
            .with_context(|| self.failed(&format!("read the log of {id}")))?;
        let rows = query
            .query_map([id], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, u64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .with_context(|| self.failed(&format!("read the log of {id}")))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ms, source, level, step, message) =
                row.with_context(|| self.failed(&format!("read the log of {id}")))?;
            let source = parse_source(&source).ok_or_else(|| {
                self.damaged(format!(
                    "line {seq} of the log of {id} has an unknown source"
                ))
            })?;
            out.push(LogEntry {
                at_ms,
                source,
                level,
                step,
                message,
            });
        }
        let overflow: Option<(u64, u64)> = conn
            .query_row(
                "SELECT dropped, last_ms FROM log_overflow WHERE execution = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .with_context(|| self.failed(&format!("read the log of {id}")))?;
        if let Some((dropped, last_ms)) = overflow {
            out.push(LogEntry {
                at_ms: last_ms,
                source: Source::Engine,
                level: "warn".to_string(),
                step: None,
                message: format!(
                    "{dropped} more line(s) were not kept: the history keeps {MAX_LOG_LINES} lines of a run's log"
                ),
            });
        }
        Ok(out)
    }

    /// A connection with this history's settings; `extra` adds `CREATE` for [`Store::open`].
    fn connect(&self, extra: OpenFlags) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra;
        let conn = Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot open the history at {}", self.path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .with_context(|| self.failed("set the busy timeout"))?;
        // The first statement reads the file's header: a file that is not SQLite fails here.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.not_a_history(e))?;
        Ok(conn)
    }

    /// Refuses a file that is not SQLite, is another program's, or is from a newer faultline.
    fn check_file(&self, conn: &Connection) -> Result<()> {
        // One statement, one snapshot: another process may be migrating the file right now.
        let (app, version): (i64, usize) = conn
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id),
                        (SELECT user_version FROM pragma_user_version)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| self.not_a_history(e))?;
        if app != APPLICATION_ID && (app != 0 || version != 0) {
            return Err(StoreError::NotAHistory {
                path: self.path.clone(),
                why: format!(
                    "it is another program's SQLite database (application id {app:#x}, schema version {version})"
                ),
            }
            .into());
        }
        if version > MIGRATIONS.len() {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            }
            .into());
        }
        Ok(())
    }

    /// Brings the schema to this binary's version.
    fn migrate(&self, conn: &mut Connection) -> Result<()> {
        let migrations = Migrations::from_slice(MIGRATIONS);
        // Immediate: two processes migrating at once take turns instead of one failing busy.
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        let result = migrations.to_latest(conn);
        conn.set_transaction_behavior(TransactionBehavior::Deferred);
        if let Err(e) = result {
            // Another process may have migrated between our version check and our lock.
            let now = migrations.current_version(conn);
            if now != Ok(SchemaVersion::Inside(non_zero(MIGRATIONS.len()))) {
                return Err(anyhow::Error::new(e).context(format!(
                    "failed to migrate the history at {}",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    /// Closes every queued or running run whose owner is gone as `error`/`ERRORED`.
    fn close_orphans(&self, conn: &mut Connection) -> Result<()> {
        let open: Vec<(String, Owner)> = {
            let mut query = conn
                .prepare(
                    "SELECT id, owner_pid, owner_start, boot_id FROM executions
                     WHERE status IN ('queued', 'running')",
                )
                .with_context(|| self.failed("find unfinished runs"))?;
            let rows = query
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        Owner {
                            pid: row.get(1)?,
                            start: row.get(2)?,
                            boot_id: row.get(3)?,
                        },
                    ))
                })
                .with_context(|| self.failed("find unfinished runs"))?;
            rows.collect::<rusqlite::Result<_>>()
                .with_context(|| self.failed("find unfinished runs"))?
        };
        let boot = crate::journal::boot_id();
        let orphans: Vec<(String, String)> = open
            .into_iter()
            .filter(|(_, owner)| !owner.is_alive())
            .map(|(id, owner)| {
                let reason = if owner.boot_id != boot {
                    format!(
                        "the faultline process (pid {}) that ran it was in an earlier boot: the \
                         machine restarted before it closed the run; recovery reverts what the \
                         reboot did not from the journal",
                        owner.pid
                    )
                } else {
                    format!(
                        "the faultline process (pid {}) that ran it ended without closing it (a \
                         crash or kill); recovery reverts its faults from the journal",
                        owner.pid
                    )
                };
                (id, reason)
            })
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| self.failed("begin a write"))?;
        for (id, reason) in orphans {
            // Read again under the write lock: another process may have closed it meanwhile.
            let json: Option<String> = tx
                .query_row(
                    "SELECT record FROM executions
                     WHERE id = ?1 AND status IN ('queued', 'running')",
                    [&id],
                    |row| row.get(0),
                )
                .optional()
                .with_context(|| self.failed(&format!("read the record of {id}")))?;
            let Some(json) = json else { continue };
            // A record that cannot be read still gets its columns closed: `list` stops showing
            // it as running, `show` reports the damage.
            let json = match serde_json::from_str::<Record>(&json) {
                Ok(mut record) => {
                    record.close_abandoned(now, &reason);
                    serde_json::to_string(&record).unwrap_or(json)
                }
                Err(e) => {
                    tracing::warn!(id, "unreadable record of an orphaned run: {e}");
                    json
                }
            };
            tx.execute(
                "UPDATE executions SET status = ?2, end_state = ?3, ended_ms = ?4, record = ?5
                 WHERE id = ?1",
                params![
                    id,
                    Status::Error.as_str(),
                    EndState::Errored.as_str(),
                    now,
                    json
                ],
            )
            .with_context(|| self.failed(&format!("close the orphaned run {id}")))?;
            tracing::warn!(id, "closed an orphaned run: {reason}");
        }
        tx.commit()
            .with_context(|| self.failed("close orphaned runs"))
    }

    fn failed(&self, what: &str) -> String {
        format!("failed to {what} in the history at {}", self.path.display())
    }

    /// A SQLite error reading the file's header: [`StoreError::NotAHistory`] when the file is
    /// not SQLite or is damaged, else the error naming the file.
    fn not_a_history(&self, e: rusqlite::Error) -> anyhow::Error {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => StoreError::NotAHistory {
                path: self.path.clone(),
                why: e.to_string(),
            }
            .into(),
            _ => anyhow::Error::new(e).context(format!(
                "cannot read the history at {}",
                self.path.display()
            )),
        }
    }

    fn damaged(&self, why: String) -> anyhow::Error {
        StoreError::NotAHistory {
            path: self.path.clone(),
            why: format!("damaged: {why}"),
        }
        .into()
    }
}

/// Runs `step` again while SQLite says busy, up to [`BUSY_TIMEOUT`]. For the switch to WAL
/// mode: it needs an exclusive lock, and SQLite answers busy at once, without the busy
/// handler, when waiting could deadlock with another connection doing the same.
fn retry_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Refuses an id that cannot be one: empty, longer than [`MAX_ID`], or with a character
/// other than ASCII letters, digits, `-` and `_`.
fn check_id(id: &str) -> Result<(), StoreError> {
    let why = if id.is_empty() {
        Some("it is empty".to_string())
    } else if id.len() > MAX_ID {
        Some(format!(
            "it is {} bytes long, at most {MAX_ID} are allowed",
            id.len()
        ))
    } else {
        id.char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            .map(|(at, c)| {
                format!("{c:?} at byte {at}: an id has only letters, digits, '-' and '_'")
            })
    };
    match why {
        None => Ok(()),
        Some(why) => Err(StoreError::BadId {
            shown: format!("{:?}", clip(id, MAX_ID)),
            why,
        }),
    }
}

/// `text`, cut at a character boundary to at most `max` bytes plus `…`.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut]).into()
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Engine => "engine",
        Source::Host => "host",
        Source::Guest => "guest",
        Source::Probe => "probe",
    }
}

fn parse_source(text: &str) -> Option<Source> {
    [Source::Engine, Source::Host, Source::Guest, Source::Probe]
        .into_iter()
        .find(|s| source_name(*s) == text)
}

fn non_zero(n: usize) -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(check_id("01JDZ8Q4K5ZC3V7Y9G2M1N0P6R").is_ok());
        assert!(check_id("run_1-a").is_ok());
        let long = "a".repeat(MAX_ID + 1);
        assert!(
            check_id(&long)
                .unwrap_err()
                .to_string()
                .contains("65 bytes long")
        );
        assert!(check_id("").unwrap_err().to_string().contains("empty"));
        let odd = check_id("../etc").unwrap_err().to_string();
        assert!(odd.contains("'.' at byte 0"), "{odd}");
        let quote = check_id("a'; DROP TABLE log; --").unwrap_err().to_string();
        assert!(quote.contains("at byte 1"), "{quote}");
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(clip("aéb", 2), "a…");
    }

    #[test]
    fn sources_round_trip_with_serde_names() {
        for s in [Source::Engine, Source::Host, Source::Guest, Source::Probe] {
            let serde = serde_json::to_value(s).unwrap();
            assert_eq!(serde.as_str(), Some(source_name(s)));
            assert_eq!(parse_source(source_name(s)), Some(s));
        }
    }

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = Owner::this_process();
        assert!(me.start > 0);
        assert!(me.is_alive());
        let other_boot = Owner {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert!(!other_boot.is_alive());
        let restarted = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(!restarted.is_alive());
    }
}
