//! Experiments: the history. A real SQLite file in a temporary directory, real processes as
//! owners of runs (alive, killed, another boot), real concurrent writers (threads with their
//! own connections, and `faultline executions` processes closing orphans while they write).

use faultline::experiment::record::{
    Activity, Check, EndState, FaultRecord, FaultStatus, LogEntry, Moment, ProbeRecord, Record,
    Source, Status, TargetRun,
};
use faultline::experiment::spec::ProbeMode;
use faultline::experiment::store::{
    MAX_LINE, MAX_LIST, MAX_LOG_LINES, Owner, Store, StoreError, history_path,
};
use faultline::host::Verdict;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");
/// 2026-12-01T10:00:00Z.
const T0: u64 = 1_796_119_200_000;

/// A finished-looking run with one fault (one target) and one probe of four checks, three
/// passed; `status` decides the rest.
fn record(id: &str, status: Status, owner: &Owner, started_ms: u64) -> Record {
    let final_ = status.is_final();
    let check = |i: u64, verdict| Check {
        at_ms: started_ms + i * 1000,
        moment: Moment::During,
        verdict,
        message: format!("check {i}"),
        value: Some(12.5),
        elapsed_ms: 3.5,
        attempts: 1,
    };
    Record {
        id: id.to_string(),
        name: "checkout survives a paused cache".to_string(),
        description: "pause redis, the shop still sells".to_string(),
        tags: vec!["cache".into()],
        team: None,
        started_by: None,
        file: "experiments/cache.yaml".to_string(),
        file_digest: format!("sha256:{}", "ab".repeat(32)),
        status,
        end_state: EndState::of(status, false),
        reason: final_.then(|| "a probe failed during the fault".to_string()),
        score: final_.then_some(87.5),
        started_ms,
        ended_ms: final_.then_some(started_ms + 12_300),
        owner_pid: owner.pid,
        owner_start: owner.start,
        boot_id: owner.boot_id.clone(),
        faults: vec![FaultRecord {
            name: "pause-cache".into(),
            lane: "main".into(),
            reference: "process-pause@^0.1".into(),
            resolved: Some("process-pause@0.1.0".into()),
            weight: 5,
            duration_ms: 10_000,
            status: if final_ {
                FaultStatus::CompletedWithError
            } else {
                FaultStatus::Running
            },
            message: None,
            targets: vec![TargetRun {
                target: "pid 4242 (redis-server)".into(),
                params: serde_json::json!({ "pid": 4242 }),
                execution: Some(format!("{id}-x1")),
                grant: Some("grant 1".into()),
                reason: final_.then(|| "duration over".into()),
                error: None,
                injected_ms: Some(started_ms + 500),
                reverted_ms: final_.then_some(started_ms + 10_600),
                revert_ms: final_.then_some(3.5),
            }],
            probe_success: final_.then_some(75.0),
            started_ms: Some(started_ms + 400),
            ended_ms: final_.then_some(started_ms + 10_600),
        }],
        probes: vec![ProbeRecord {
            name: "shop-answers".into(),
            reference: "http-probe@^0.1".into(),
            resolved: Some("http-probe@0.1.0".into()),
            mode: Some(ProbeMode::Continuous),
            faults: vec!["pause-cache".into()],
            tally: Default::default(),
            checks: vec![
                check(1, Verdict::Passed),
                check(2, Verdict::Failed),
                check(3, Verdict::Passed),
                check(4, Verdict::Passed),
            ],
            success_rate: Some(75.0),
            verdict: final_.then_some(Verdict::Failed),
        }],
        activities: vec![Activity {
            kind: "fault".into(),
            name: "pause-cache".into(),
            lane: "main".into(),
            started_ms: Some(started_ms + 400),
            ended_ms: final_.then_some(started_ms + 10_600),
            status: if final_ {
                "completed-with-error"
            } else {
                "running"
            }
            .into(),
            output: String::new(),
        }],
    }
}

fn line(at_ms: u64, message: &str) -> LogEntry {
    LogEntry {
        at_ms,
        source: Source::Engine,
        level: "info".into(),
        step: Some("pause-cache".into()),
        message: message.into(),
    }
}

fn faultline(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A process that was alive, and is now gone (killed and reaped): its pid and start time.
fn dead_owner() -> Owner {
    let mut child = Command::new("sleep").arg("300").spawn().unwrap();
    let owner = Owner::of(child.id()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!owner.is_alive());
    owner
}

fn store_error(e: &anyhow::Error) -> &StoreError {
    e.downcast_ref::<StoreError>()
        .unwrap_or_else(|| panic!("not a StoreError: {e:#}"))
}

#[test]
fn a_record_and_its_log_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/history.sqlite");
    let me = Owner::this_process();
    let done = record(
        "01JEXAMPLE0000000000000001",
        Status::CompletedWithError,
        &me,
        T0,
    );
    let running = record(
        "01JEXAMPLE0000000000000002",
        Status::Running,
        &me,
        T0 + 60_000,
    );
    let lines: Vec<LogEntry> = (0..10)
        .map(|i| line(T0 + i, &format!("line {i}")))
        .collect();
    {
        let store = Store::open(&path).unwrap();
        store.save(&running).unwrap();
        store.save(&done).unwrap();
        store.append_log(&done.id, &lines[..4]).unwrap();
        store.append_log(&done.id, &lines[4..]).unwrap();
    }
    // The directory holding it is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("state"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // A new process would do just this: open the file again.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&done.id).unwrap().as_ref(), Some(&done));
    assert_eq!(
        store.get(&running.id).unwrap().as_ref(),
        Some(&running),
        "ours: still live"
    );
    assert_eq!(store.log(&done.id).unwrap(), lines);
    assert_eq!(store.log(&running.id).unwrap(), vec![]);
    assert_eq!(store.get("01JNOSUCHRUN0000000000000").unwrap(), None);
    let list = store.list(10).unwrap();
    assert_eq!(
        list.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [running.id.as_str(), done.id.as_str()],
        "newest first"
    );
    assert_eq!(list[1].status, Status::CompletedWithError);
    assert_eq!(list[1].end_state.as_deref(), Some("FAILED"));
    assert_eq!(list[1].score, Some(87.5));
    assert_eq!(list[1].ended_ms, Some(T0 + 12_300));
    assert_eq!(list[0].end_state, None);
    assert_eq!(store.list(1).unwrap().len(), 1);

    // Saving again replaces (the engine saves at every step).
    let mut closed = running.clone();
    closed.status = Status::Stopped;
    closed.end_state = Some(EndState::Canceled);
    store.save(&closed).unwrap();
    assert_eq!(store.get(&closed.id).unwrap(), Some(closed));
    assert_eq!(store.list(MAX_LIST).unwrap()[0].status, Status::Stopped);
    assert_eq!(store.list(MAX_LIST).unwrap().len(), 2);

    let journal_mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
}

#[test]
fn concurrent_writers_lose_nothing_and_another_process_reads_and_writes_meanwhile() {
    const THREADS: usize = 4;
    const RUNS: usize = 100;
    const BATCHES: usize = 3;
    const PER_BATCH: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = history_path(&state);
    Store::open(&path).unwrap();
    let me = Owner::this_process();
    let dead = dead_owner();

    let started = Instant::now();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (path, me, dead) = (path.clone(), me.clone(), dead.clone());
            std::thread::spawn(move || {
                // Its own Store: its own connections, like another process.
                let store = Store::open(&path).unwrap();
                for r in 0..RUNS {
                    let id = format!("t{t}-r{r:03}");
                    let at = T0 + (t * RUNS + r) as u64;
                    store.save(&record(&id, Status::Running, &me, at)).unwrap();
                    for b in 0..BATCHES {
                        let batch: Vec<LogEntry> = (0..PER_BATCH)
                            .map(|i| line(at, &format!("{id} {}", b * PER_BATCH + i)))
                            .collect();
                        store.append_log(&id, &batch).unwrap();
                    }
                    store
                        .save(&record(&id, Status::Completed, &me, at))
                        .unwrap();
                    // A crashed run for the other process to close while we write.
                    let orphan = format!("t{t}-o{r:03}");
                    store
                        .save(&record(&orphan, Status::Running, &dead, at))
                        .unwrap();
                }
            })
        })
        .collect();
    // Meanwhile, other processes open the history (closing the orphans: a write) and list it.
    let mut listings = 0;
    let mut closed_by_others = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let out = faultline(
            &state,
            &["executions", "list", "--json", "--limit", "10000"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        closed_by_others = closed_by_others.max(
            runs.iter()
                .filter(|r| r["id"].as_str().unwrap().contains("-o") && r["status"] == "error")
                .count(),
        );
        listings += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();
    assert!(
        listings > 0 && closed_by_others > 0,
        "{listings} listings, {closed_by_others} closed"
    );

    let store = Store::open(&path).unwrap();
    let all = store.list(MAX_LIST).unwrap();
    assert_eq!(all.len(), THREADS * RUNS * 2);
    for s in &all {
        if s.id.contains("-o") {
            assert_eq!(
                (s.status, s.end_state.as_deref()),
                (Status::Error, Some("ERRORED")),
                "{}",
                s.id
            );
        } else {
            assert_eq!(s.status, Status::Completed, "{}", s.id);
            let log = store.log(&s.id).unwrap();
            let want: Vec<String> = (0..BATCHES * PER_BATCH)
                .map(|i| format!("{} {i}", s.id))
                .collect();
            assert_eq!(
                log.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
                want
            );
        }
    }
    eprintln!(
        "history: {THREADS} threads saved {} records of {} runs and {} log lines in \
         {elapsed:.2?} ({:.0} write transactions/s) while {listings} `executions list` \
         processes read and closed {closed_by_others}+ orphans",
        THREADS * RUNS * 3,
        THREADS * RUNS * 2,
        THREADS * RUNS * BATCHES * PER_BATCH,
        (THREADS * RUNS * (3 + BATCHES)) as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn an_orphaned_run_is_closed_as_errored_and_a_live_one_is_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = history_path(&state);
    let me = Owner::this_process();
    let live_other = faultline_tests::Sleeper::start();
    let other = Owner::of(live_other.pid()).unwrap();
    let dead = dead_owner();
    let rebooted = Owner {
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        ..me.clone()
    };
    let mut queued = record("queued-dead", Status::Queued, &dead, T0 + 4);
    queued.faults[0].status = FaultStatus::Pending;
    {
        let store = Store::open(&path).unwrap();
        store
            .save(&record("mine", Status::Running, &me, T0))
            .unwrap();
        store
            .save(&record("other-live", Status::Running, &other, T0 + 1))
            .unwrap();
        store
            .save(&record("crashed", Status::Running, &dead, T0 + 2))
            .unwrap();
        store
            .save(&record("old-boot", Status::Running, &rebooted, T0 + 3))
            .unwrap();
        store.save(&queued).unwrap();
        store
            .save(&record("done", Status::Completed, &dead, T0 + 5))
            .unwrap();
    }
    let before = Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Another process opens it: the orphans are closed there.
    let out = faultline(&state, &["executions", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let store = Store::open(&path).unwrap();
    for live in ["mine", "other-live"] {
        let r = store.get(live).unwrap().unwrap();
        assert_eq!(
            (r.status, r.end_state, r.ended_ms),
            (Status::Running, None, None),
            "{live}"
        );
        assert_eq!(r.faults[0].status, FaultStatus::Running, "{live}");
    }
    let crashed = store.get("crashed").unwrap().unwrap();
    assert_eq!(crashed.status, Status::Error);
    assert_eq!(crashed.end_state, Some(EndState::Errored));
    let ended = crashed.ended_ms.unwrap();
    assert!(ended >= now_ms && ended <= now_ms + before.elapsed().as_millis() as u64 + 1000);
    let reason = crashed.reason.unwrap();
    assert!(
        reason.contains(&format!("the faultline process (pid {})", dead.pid))
            && reason.contains("crash or kill")
            && reason.contains("recovery reverts its faults from the journal"),
        "{reason}"
    );
    assert_eq!(crashed.faults[0].status, FaultStatus::Error);
    let old_boot = store.get("old-boot").unwrap().unwrap();
    assert_eq!(
        (old_boot.status, old_boot.end_state),
        (Status::Error, Some(EndState::Errored))
    );
    assert!(old_boot.reason.unwrap().contains("earlier boot"));
    let queued = store.get("queued-dead").unwrap().unwrap();
    assert_eq!(queued.status, Status::Error);
    assert_eq!(queued.faults[0].status, FaultStatus::Skipped);
    // A finished run of a dead process is history, not an orphan.
    let done = store.get("done").unwrap().unwrap();
    assert_eq!(done, record("done", Status::Completed, &dead, T0 + 5));
    // The columns `list` reads agree with the records.
    let list = store.list(10).unwrap();
    let status_of = |id: &str| list.iter().find(|s| s.id == id).unwrap().clone();
    assert_eq!(status_of("crashed").status, Status::Error);
    assert_eq!(status_of("crashed").end_state.as_deref(), Some("ERRORED"));
    assert_eq!(status_of("crashed").ended_ms, Some(ended));
    assert_eq!(status_of("other-live").status, Status::Running);
    drop(live_other);
    // Once that process is gone, the next open closes its run too.
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get("other-live").unwrap().unwrap().status,
        Status::Error
    );
    assert_eq!(store.get("mine").unwrap().unwrap().status, Status::Running);
}

#[test]
fn a_history_from_a_newer_faultline_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let me = Owner::this_process();
    Store::open(&path)
        .unwrap()
        .save(&record("kept", Status::Completed, &me, T0))
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            store_error(&e),
            StoreError::NewerSchema {
                found: 7,
                known: 2,
                ..
            }
        ),
        "{e:#}"
    );
    let said = format!("{e:#}");
    assert!(
        said.contains(&path.display().to_string()) && said.contains("schema version 7"),
        "{said}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, rows), (7, 1), "untouched");
}

#[test]
fn a_file_that_is_no_history_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("history.sqlite");
    let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let e = Store::open(&garbage).unwrap_err();
    assert!(
        matches!(store_error(&e), StoreError::NotAHistory { .. }),
        "{e:#}"
    );
    let said = format!("{e:#}");
    assert!(said.contains(&garbage.display().to_string()), "{said}");
    assert!(said.contains("not a faultline history"), "{said}");
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "untouched");

    // Another program's SQLite file.
    let other = dir.path().join("other.sqlite");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("PRAGMA application_id = 42; CREATE TABLE t (x);")
        .unwrap();
    drop(conn);
    let e = Store::open(&other).unwrap_err();
    let said = format!("{e:#}");
    assert!(
        said.contains(&other.display().to_string()) && said.contains("another program"),
        "{said}"
    );

    // Through the command line: exit 2 and the path.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(history_path(&state), b"not a database, just text").unwrap();
    let out = faultline(&state, &["executions", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&history_path(&state).display().to_string()),
        "{}",
        text(&out)
    );
}

#[test]
fn a_runs_log_is_bounded_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("history.sqlite")).unwrap();
    let id = "01JLONGLOG000000000000000";
    let long = "é".repeat(MAX_LINE); // 2 bytes each: twice the bound
    let first = LogEntry {
        message: long,
        step: Some("s".repeat(10_000)),
        ..line(T0, "")
    };
    store.append_log(id, &[first]).unwrap();
    let total = MAX_LOG_LINES as usize + 25;
    let batch = 10_000;
    let started = Instant::now();
    for start in (1..total).step_by(batch) {
        let entries: Vec<LogEntry> = (start..(start + batch).min(total))
            .map(|i| line(T0 + i as u64, &format!("line {i}")))
            .collect();
        store.append_log(id, &entries).unwrap();
    }
    let wrote = started.elapsed();
    let started = Instant::now();
    let log = store.log(id).unwrap();
    eprintln!(
        "history: {total} log lines appended in batches of {batch} in {wrote:.2?}, read back in {:.2?}",
        started.elapsed()
    );
    assert_eq!(log.len(), MAX_LOG_LINES as usize + 1);
    assert!(log[0].message.len() <= MAX_LINE + '…'.len_utf8() && log[0].message.ends_with('…'));
    assert!(log[0].step.as_ref().unwrap().len() < 300);
    let kept_last = &log[MAX_LOG_LINES as usize - 1];
    assert_eq!(kept_last.message, format!("line {}", MAX_LOG_LINES - 1));
    let last = log.last().unwrap();
    assert_eq!(last.level, "warn");
    assert!(
        last.message.starts_with("25 more line(s) were not kept"),
        "{}",
        last.message
    );
    assert_eq!(last.at_ms, T0 + total as u64 - 1);
}

#[test]
fn bad_ids_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("history.sqlite")).unwrap();
    for (id, why) in [
        ("x".repeat(65).as_str(), "65 bytes long"),
        ("../../etc/passwd", "'.' at byte 0"),
        ("a' OR '1'='1", "'\\'' at byte 1"),
        ("", "empty"),
    ] {
        for e in [store.get(id).unwrap_err(), store.log(id).unwrap_err()] {
            assert!(matches!(store_error(&e), StoreError::BadId { .. }), "{e:#}");
            assert!(e.to_string().contains(why), "{id:?}: {e}");
        }
    }
    let e = store.append_log("a b", &[line(T0, "x")]).unwrap_err();
    assert!(e.to_string().contains("' ' at byte 1"), "{e}");
    let e = store
        .save(&record(
            "semi;colon",
            Status::Completed,
            &Owner::this_process(),
            T0,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("';' at byte 4"), "{e}");
}

#[test]
fn executions_list_show_and_log_print_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = history_path(&state);
    let me = Owner::this_process();
    let done = record(
        "01JCLI00000000000000000001",
        Status::CompletedWithError,
        &me,
        T0,
    );
    let mut unscored = record(
        "01JCLI00000000000000000002",
        Status::Running,
        &me,
        T0 + 60_000,
    );
    unscored.name = "evil\x1b[2Jname".into();
    {
        let store = Store::open(&path).unwrap();
        store.save(&done).unwrap();
        store.save(&unscored).unwrap();
        let mut warn = line(T0 + 1_250, "probe shop-answers failed: 503");
        warn.source = Source::Probe;
        warn.level = "warn".into();
        let no_step = LogEntry {
            step: None,
            ..line(T0 + 12_300, "run ended: completed-with-error")
        };
        store
            .append_log(&done.id, &[line(T0, "injected"), warn, no_step])
            .unwrap();
    }

    let out = faultline(&state, &["executions", "list"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    for column in [
        "ID",
        "NAME",
        "STATUS",
        "END STATE",
        "SCORE",
        "STARTED",
        "DURATION",
    ] {
        assert!(lines[0].contains(column), "{said}");
    }
    assert!(lines[1].starts_with(&unscored.id), "newest first: {said}");
    assert!(
        lines[1].contains("evil\\u{1b}[2Jname") && !said.contains('\x1b'),
        "{said}"
    );
    let cells: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[2..],
        ["running", "-", "-", "2026-12-01T10:01:00Z", "-"],
        "{said}"
    );
    let cells: Vec<&str> = lines[2]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            done.id.as_str(),
            "checkout survives a paused cache",
            "completed-with-error",
            "FAILED",
            "87.5",
            "2026-12-01T10:00:00Z",
            "12s"
        ],
        "{said}"
    );

    let out = faultline(&state, &["executions", "list", "--json", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["id"], unscored.id.as_str());
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[0]["started_ms"], T0 + 60_000);

    let out = faultline(&state, &["executions", "show", &done.id]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for want in [
        "execution 01JCLI00000000000000000001",
        "checkout survives a paused cache (experiments/cache.yaml)",
        "status      completed-with-error (end state FAILED)",
        "reason      a probe failed during the fault",
        "score       87.5",
        "started     2026-12-01T10:00:00Z",
        "after 12s",
        "pause-cache [lane main]  process-pause@0.1.0  completed-with-error, weight 5, probe success 75.0%",
        "target pid 4242 (redis-server): duration over",
        "shop-answers (continuous)  failed, 4 check(s), 3 passed, success 75.0%",
    ] {
        assert!(said.contains(want), "missing {want:?} in:\n{said}");
    }
    let out = faultline(&state, &["executions", "show", &done.id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let back: Record = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, done);

    let out = faultline(&state, &["executions", "log", &done.id]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            "2026-12-01T10:00:00.000Z engine info [pause-cache] injected",
            "2026-12-01T10:00:01.250Z probe warn [pause-cache] probe shop-answers failed: 503",
            "2026-12-01T10:00:12.300Z engine info run ended: completed-with-error",
        ],
        "{said}"
    );
    // A run that logged nothing prints nothing, and is not "unknown".
    let out = faultline(&state, &["executions", "log", &unscored.id]);
    assert_eq!((out.status.code(), text(&out)), (Some(0), String::new()));

    let unknown = "01JNOSUCHRUN0000000000000";
    for cmd in ["show", "log"] {
        let out = faultline(&state, &["executions", cmd, unknown]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert_eq!(
            text(&out).trim(),
            format!(
                "error: no execution {unknown} in the history at {}",
                path.display()
            )
        );
    }
    let out = faultline(&state, &["executions", "show", "../../etc/passwd"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad execution id"), "{}", text(&out));

    // An empty history says so.
    let empty = dir.path().join("empty");
    let out = faultline(&empty, &["executions", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("no runs in the history at "),
        "{}",
        text(&out)
    );
    let out = faultline(&empty, &["executions", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn processes_creating_the_history_at_once_all_open_it() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = history_path(&state);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
        // Four threads and two processes create, set WAL and migrate the same new file.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let store = Store::open(&path).unwrap();
                    let id = format!("open-{t}");
                    store
                        .save(&record(&id, Status::Completed, &Owner::this_process(), T0))
                        .unwrap();
                })
            })
            .collect();
        let children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(BIN)
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["executions", "list", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        barrier.wait();
        for t in threads {
            t.join().unwrap();
        }
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        }
        assert_eq!(Store::open(&path).unwrap().list(10).unwrap().len(), 4);
    }
}
