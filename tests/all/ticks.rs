//! Faults that act over time: the host ticks them on their schedule while they are held, a
//! failing tick ends the run and reverts it, and the faults built on ticks (`process-slow`,
//! `process-kill`'s graceful and interval modes) have their real effect on real processes.

use faultline::execution::{Event, EventKind, Execution, Handle, Outcome, Spec, StopReason};
use faultline::host::{Host, MAX_STATE_BYTES};
use faultline::policy::Policy;
use faultline_tests::components as c;
use faultline_tests::{Sleeper, host, injected, policy_for_pids, proc_state, wasm};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts a run of `component` with `params` for `duration`; returns its handle and task.
async fn start(
    host: &Arc<Host>,
    component: &str,
    policy: &Policy,
    params: String,
    duration: Duration,
) -> (Handle, tokio::task::JoinHandle<Arc<Outcome>>) {
    let plugin = faultline_tests::load_fault(host, &wasm(component), policy)
        .await
        .unwrap();
    assert!(plugin.ticks(), "{} does not tick", plugin.label());
    plugin.validate(host, &params).await.unwrap();
    let execution = Execution::new(
        host.clone(),
        Arc::new(plugin),
        Spec {
            id: faultline::execution::new_id(),
            params,
            duration,
            lease: None,
        },
    );
    let handle = execution.handle();
    (handle, tokio::spawn(execution.run()))
}

/// Runs to the end; returns the outcome and the events.
async fn run(
    host: &Arc<Host>,
    component: &str,
    policy: &Policy,
    params: String,
    duration: Duration,
) -> (Arc<Outcome>, Vec<Event>) {
    let (handle, task) = start(host, component, policy, params, duration).await;
    let outcome = tokio::time::timeout(duration + Duration::from_secs(10), task)
        .await
        .expect("the run ended")
        .unwrap();
    (outcome, handle.history())
}

fn said(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Host { message, .. } | EventKind::Log { message, .. } => {
                Some(message.clone())
            }
            EventKind::Phase { .. } => None,
        })
        .collect()
}

fn shared_host() -> (Arc<Host>, tempfile::TempDir) {
    let (host, dir) = host();
    (Arc::new(host), dir)
}

/// A misbehaving tick ends the run with `TickFailed`, says why, and the pause `inject` made is
/// undone by the journal.
async fn misbehaving_tick(mode: &str, at: u64) -> (Arc<Outcome>, Vec<Event>, Duration) {
    let target = Sleeper::start();
    let (host, _d) = shared_host();
    let params = format!(
        r#"{{"pid": {}, "tick": "{mode}", "at": {at}, "every_ms": 20}}"#,
        target.pid()
    );
    let start = Instant::now();
    let (outcome, events) = run(
        &host,
        c::TICKING,
        &policy_for_pids(&[target.pid()]),
        params,
        Duration::from_secs(30),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        outcome.reason,
        StopReason::TickFailed,
        "{mode}: {outcome:?}"
    );
    assert_eq!(outcome.ticks, at, "{mode}: ticks before the failing one");
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(target.state(), 'S', "{mode}: the pause was not undone");
    assert!(host.journal().outstanding(None).is_empty());
    let text = said(&events);
    assert!(
        text.iter()
            .any(|m| m.starts_with(&format!("tick {at} failed: "))),
        "{text:?}"
    );
    (outcome, events, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_tick_ends_the_run_and_is_reverted() {
    let (outcome, _, _) = misbehaving_tick("trap", 2).await;
    let error = outcome.tick_error.as_deref().unwrap();
    assert!(error.starts_with("tick trapped: "), "{error}");
    assert!(error.contains("deliberate panic in tick 2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_tick_is_cut_off_at_its_deadline_and_reverted() {
    let (outcome, _, took) = misbehaving_tick("loop", 0).await;
    let error = outcome.tick_error.as_deref().unwrap();
    assert_eq!(
        error, "tick ran past its deadline of 1.5s and was cut off",
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_or_oversized_tick_ends_the_run_and_is_reverted() {
    let (outcome, _, _) = misbehaving_tick("fail", 1).await;
    assert_eq!(
        outcome.tick_error.as_deref(),
        Some("tick returned an error: failed: ticking: deliberate error")
    );
    let (outcome, _, _) = misbehaving_tick("huge", 3).await;
    let error = outcome.tick_error.as_deref().unwrap();
    assert!(
        error.contains(&format!("more than the {MAX_STATE_BYTES} the host keeps")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_follow_their_schedule_and_stop_at_the_duration() {
    let target = Sleeper::start();
    let (host, _d) = shared_host();
    let params = format!(r#"{{"pid": {}, "every_ms": 50}}"#, target.pid());
    let (outcome, events) = run(
        &host,
        c::TICKING,
        &policy_for_pids(&[target.pid()]),
        params,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(outcome.reason, StopReason::DurationOver);
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(target.state(), 'S');
    // Ticks at 0, 50, ..., 950 ms: 20, none past the end; a slow machine may lose a few.
    eprintln!("ticks in 1 s at 50 ms: {}", outcome.ticks);
    assert!(
        (15..=20).contains(&outcome.ticks),
        "{} ticks",
        outcome.ticks
    );
    // One summary, not one event per tick.
    assert!(events.len() < 12, "{} events: {events:?}", events.len());
    let text = said(&events);
    assert!(
        text.contains(&format!("{} ticks (0 changes)", outcome.ticks)),
        "{text:?}"
    );
    assert!(
        text.iter().any(|m| m.starts_with("reverting after")),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_asks_for_no_more_ticks_is_held_to_the_end() {
    let target = Sleeper::start();
    let (host, _d) = shared_host();
    let params = format!(r#"{{"pid": {}, "tick": "done", "at": 1}}"#, target.pid());
    let start = Instant::now();
    let (outcome, _) = run(
        &host,
        c::TICKING,
        &policy_for_pids(&[target.pid()]),
        params,
        Duration::from_millis(600),
    )
    .await;
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert_eq!(outcome.reason, StopReason::DurationOver);
    assert_eq!(outcome.ticks, 2);
    assert_eq!(target.state(), 'S');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_the_ticks_and_reverts() {
    let target = Sleeper::start();
    let (host, _d) = shared_host();
    let params = format!(r#"{{"pid": {}, "tick": "loop", "at": 3}}"#, target.pid());
    let (handle, task) = start(
        &host,
        c::TICKING,
        &policy_for_pids(&[target.pid()]),
        params,
        Duration::from_secs(30),
    )
    .await;
    injected(&handle).await;
    // Tick 3 loops (until its 1.5 s deadline): the stop lands while it is in flight.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(proc_state(target.pid()), 'T');
    let stopped = Instant::now();
    handle.stop(StopReason::UserStop);
    let outcome = task.await.unwrap();
    assert!(
        stopped.elapsed() < Duration::from_millis(500),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(outcome.reason, StopReason::UserStop);
    assert_eq!(outcome.ticks, 3);
    assert!(outcome.is_clean());
    assert_eq!(target.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
}

/// utime + stime of `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// CPU ticks per second `pid` gets over `window`.
async fn cpu_rate(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(window).await;
    (cpu_ticks(pid) - c0) as f64 / t0.elapsed().as_secs_f64()
}

/// A busy loop, killed when dropped. It runs in a session of its own, whose autogroup gets the
/// highest priority when we may set it: with autogroups on, nice values only count within a
/// session, and the rest of the machine's work would make its unthrottled rate swing.
struct Busy(Child);

impl Busy {
    fn start() -> Busy {
        let child = Command::new("setsid")
            .args(["sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Once it leads its own session (else this would set the test's own autogroup).
        let deadline = Instant::now() + Duration::from_secs(5);
        while session(pid) != Some(pid) {
            assert!(Instant::now() < deadline, "setsid did not take");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Needs CAP_SYS_NICE; without it the test still runs, only noisier.
        let _ = std::fs::write(format!("/proc/{pid}/autogroup"), "-20");
        Busy(child)
    }
}

/// The session id of `pid` (field 6 of `/proc/<pid>/stat`).
fn session(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_slow_gives_its_target_the_asked_share_of_cpu() {
    let busy = Busy::start();
    let pid = busy.0.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_rate(pid, Duration::from_millis(1500)).await;
    let (host, state_dir) = shared_host();
    // 300 ms of every 500 running: 60 %.
    let params = format!(r#"{{"pid": {pid}, "pause_ms": 200, "run_ms": 300}}"#);
    let (handle, task) = start(
        &host,
        c::PROCESS_SLOW,
        &policy_for_pids(&[pid]),
        params,
        Duration::from_millis(5500),
    )
    .await;
    injected(&handle).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Eight whole cycles.
    let slowed = cpu_rate(pid, Duration::from_millis(4000)).await;
    let outcome = task.await.unwrap();
    let state = proc_state(pid);
    let after = cpu_rate(pid, Duration::from_millis(1500)).await;
    let unthrottled = (before + after) / 2.0;
    let share = slowed / unthrottled;
    eprintln!(
        "process-slow 200/300: {slowed:.1} ticks/s against {unthrottled:.1} unthrottled \
         ({before:.1} before, {after:.1} after): {:.1} % (asked 60 %), {} ticks",
        share * 100.0,
        outcome.ticks
    );
    assert_eq!(outcome.reason, StopReason::DurationOver);
    assert!(outcome.is_clean(), "{outcome:?}");
    assert!(host.journal().outstanding(None).is_empty());
    assert!(state == 'R' || state == 'S', "state {state} after revert");
    assert!(
        (share - 0.60).abs() <= 0.05,
        "got {:.1} % of the CPU",
        share * 100.0
    );
    assert!(outcome.ticks >= 18, "{} ticks", outcome.ticks);
    let journal: u64 = std::fs::read_dir(state_dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!(
        "process-slow: journal {journal} bytes after {} pauses (emptied whenever nothing is outstanding)",
        outcome.ticks.div_ceil(2)
    );
}

/// `sh` running `script` in a loop of short sleeps.
fn shell(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `child` exits (up to `limit`): its status and when.
async fn exited(child: &mut Child, limit: Duration) -> Option<(std::process::ExitStatus, Instant)> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((status, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// How a child ended under `process-kill`.
struct Killed {
    pid: u32,
    status: std::process::ExitStatus,
    /// From the end of inject to the child's exit.
    after: Duration,
    outcome: Arc<Outcome>,
    said: Vec<String>,
}

/// Runs `process-kill` for `duration` with `extra` parameters on a child running `script`.
async fn kill_child(script: &str, extra: &str, duration: Duration) -> Killed {
    let (host, _d) = shared_host();
    let mut child = shell(script);
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let params = format!(r#"{{"pid": {pid}{extra}}}"#);
    let policy = policy_for_pids(&[pid]);
    let (handle, task) = start(&host, c::PROCESS_KILL, &policy, params, duration).await;
    injected(&handle).await;
    let held = Instant::now();
    let (status, at) = exited(&mut child, duration + Duration::from_secs(2))
        .await
        .expect("the child exited");
    let outcome = task.await.unwrap();
    assert!(outcome.is_clean(), "{outcome:?}");
    Killed {
        pid,
        status,
        after: at - held,
        outcome,
        said: said(&handle.history()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kill_graceful_kills_what_ignores_term_after_the_grace_period() {
    let stubborn = "trap '' TERM; while :; do sleep 0.05; done";
    let k = kill_child(
        stubborn,
        r#", "grace_period": "1s""#,
        Duration::from_secs(3),
    )
    .await;
    eprintln!(
        "process-kill graceful: SIGKILL {:?} after TERM (grace 1s)",
        k.after
    );
    assert_eq!(k.status.signal(), Some(9), "{:?}", k.status);
    assert!(
        k.after >= Duration::from_millis(950) && k.after <= Duration::from_millis(1500),
        "killed {:?} after inject",
        k.after
    );
    assert_eq!(k.outcome.reason, StopReason::DurationOver);
    let line = format!("{} outlived its grace period: SIGKILL sent", k.pid);
    assert!(k.said.contains(&line), "{:?}", k.said);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kill_graceful_lets_what_honours_term_exit_on_its_own() {
    let polite = "trap 'exit 7' TERM; while :; do sleep 0.05; done";
    let k = kill_child(
        polite,
        r#", "grace_period": "1s""#,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(
        k.status.code(),
        Some(7),
        "exited on TERM by itself: {:?}",
        k.status
    );
    assert_eq!(k.outcome.reason, StopReason::DurationOver);
    assert!(
        !k.said.iter().any(|m| m.contains("outlived")),
        "{:?}",
        k.said
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kill_keeps_its_0_1_parameters() {
    let script = "while :; do sleep 0.05; done";
    let extra = r#", "signal": "term", "max_targets": 1"#;
    let k = kill_child(script, extra, Duration::from_millis(300)).await;
    assert_eq!(k.status.signal(), Some(15), "{:?}", k.status);
    assert_eq!(k.outcome.reason, StopReason::DurationOver);
    // One signal at inject, then one tick that finds nothing more to do.
    assert_eq!(k.outcome.ticks, 1);
    let kills = k
        .said
        .iter()
        .filter(|m| m.starts_with("signalled "))
        .count();
    assert_eq!(kills, 1);
}

/// A supervisor restarting `sleep 987.654` whenever it dies; stops it and its child on drop.
struct Supervisor(Child);

impl Supervisor {
    fn children(&self) -> Vec<u32> {
        let pid = self.0.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Stopped first, so it restarts nothing while its child is killed.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
        for child in self.children() {
            let child = nix::unistd::Pid::from_raw(i32::try_from(child).unwrap());
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kill_interval_kills_a_respawning_target_again() {
    let supervisor = Supervisor(shell("while :; do sleep 987.654; done"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while supervisor.children().is_empty() {
        assert!(Instant::now() < deadline, "no child");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (host, _d) = shared_host();
    let policy = Policy::parse(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = { cmdlines = [\"^sleep 987\\\\.654$\"], signals = [\"kill\"] }\n",
    )
    .unwrap();
    let params = r#"{"cmdline": "^sleep 987\\.654$", "interval": "300ms"}"#.to_string();
    let (handle, task) = start(
        &host,
        c::PROCESS_KILL,
        &policy,
        params,
        Duration::from_millis(1500),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    while !task.is_finished() {
        seen.extend(supervisor.children());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcome = task.await.unwrap();
    let text = said(&handle.history());
    let kills: Vec<&String> = text
        .iter()
        .filter(|m| m.starts_with("signalled "))
        .collect();
    eprintln!(
        "process-kill interval 300ms over 1.5s: {} kills, {} distinct children seen",
        kills.len(),
        seen.len()
    );
    assert_eq!(outcome.reason, StopReason::DurationOver);
    // At inject, then at 300, 600, 900, 1200 ms: at least the first and two more.
    assert!(kills.len() >= 3, "{kills:?}");
    assert!(seen.len() >= 3, "respawned children {seen:?}");
    assert!(
        !supervisor.children().is_empty(),
        "the supervisor still respawns"
    );
}

#[tokio::test]
async fn a_tick_export_of_the_wrong_type_is_refused_naming_it() {
    let (host, _d) = host();
    let refused = faultline_tests::load_fault(&host, &wasm(c::BAD_TICK), &Policy::default())
        .await
        .err()
        .expect("refused");
    let msg = refused.to_string();
    assert!(
        msg.starts_with("component exports do not match the contract's types: 'tick' is not the contract's tick(tick-request) -> result<tick-response, error>"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_parameters_of_ticking_faults_are_refused_with_reasons() {
    let (host, _d) = host();
    let cases: &[(&str, &str, &str)] = &[
        (
            c::PROCESS_SLOW,
            r#"{"pid": 5, "pause_ms": 5}"#,
            "`pause_ms` must be 10 to 3600000, not 5",
        ),
        (
            c::PROCESS_SLOW,
            r#"{"pid": 5, "name": "x"}"#,
            "give exactly one of `pid`, `name` or `cmdline`",
        ),
        (
            c::PROCESS_KILL,
            r#"{"pid": 5, "interval": "50ms"}"#,
            "`interval` must be 100ms to 1day, not 50ms",
        ),
        (
            c::PROCESS_KILL,
            r#"{"pid": 5, "grace_period": "soon"}"#,
            "/grace_period: ",
        ),
        (
            c::PROCESS_KILL,
            r#"{"pid": 5, "grace_period": "5s", "signal": "kill"}"#,
            "has nothing to wait for",
        ),
    ];
    let policy = policy_for_pids(&[5]);
    for (component, params, expected) in cases {
        let plugin = faultline_tests::load_fault(&host, &wasm(component), &policy)
            .await
            .unwrap();
        let text = plugin
            .validate(&host, params)
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("invalid"), "{params}: {text}");
        assert!(text.contains(expected), "{params}: {text}");
    }
}
