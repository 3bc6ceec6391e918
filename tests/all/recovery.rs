//! Rollback under fire: kill -9 the real binary at random points and recover, SIGTERM during
//! inject, corrupt journals, and the agent's lease, stop and emergency stop — all against real
//! processes, compared with a snapshot taken before.
//!
//! The faults are `process-pause` (bundled), the `misbehave` fixture (pauses a process, then
//! loops in inject or traps/lies/fails in revert) and, as root, `network-loss` in throwaway
//! namespaces and `cgroup-cpu` on a throwaway cgroup.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use faultline::agent::auth::Role;
use faultline_tests::agent::{Options, TestAgent, call_tcp};
use faultline_tests::torture::{Rng, Snapshot, iterations, policy_file, wait_all};
use faultline_tests::{Sleeper, components as c, repo_root};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

fn process_pause() -> String {
    repo_root()
        .join("hub/components/process-pause-0.1.0.wasm")
        .display()
        .to_string()
}

fn faultline(state: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir").arg(state);
    cmd
}

/// Starts `inject` and returns once it has loaded the component (inject comes next).
fn start_inject(state: &Path, component: &str, params: &str, policy: &Path) -> Child {
    let mut child = faultline(state)
        .args([
            "inject",
            component,
            "--params-json",
            params,
            "--duration",
            "60s",
        ])
        .args(["--call-timeout", "2s", "--policy"])
        .arg(policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "inject exited before loading"
        );
        if line.starts_with("loaded ") {
            break;
        }
        assert!(!line.starts_with("error"), "{line}");
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

fn recover(state: &Path) -> (i32, String) {
    let out = faultline(state).arg("recover").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn journal_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("journal"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn undone_count(report: &str) -> usize {
    report
        .split("journal(s): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The policy for the torture: the target pids, the throwaway namespaces' `v0`, the test cgroup.
fn torture_policy(dir: &Path, pids: &[u32], cgroup: Option<&str>) -> PathBuf {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let mut text = format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\", \"network\", \"cgroup\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\nnetwork = {{ namespaces = [\"named:flt-*\"], interfaces = [\"{}\"] }}\n",
        list.join(", "),
        faultline_tests::netns::A_IF
    );
    if let Some(path) = cgroup {
        text.push_str(&format!("cgroup = {{ subtrees = [\"{path}\"] }}\n"));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn crash_torture_kill_9_at_random_points_then_recover_restores_everything() {
    use faultline_tests::{cgroups::TestCgroup, netns::NetPair};
    let n = iterations(10);
    let mut rng = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let targets = [Sleeper::start(), Sleeper::start()];
    let pids: Vec<u32> = targets.iter().map(Sleeper::pid).collect();
    // Network and cgroup faults need root; without it the torture runs the process faults.
    let privileged = faultline_tests::privileged("crash torture with network and cgroup faults");
    let pair = privileged.then(|| NetPair::new("ftort"));
    let cg = privileged.then(|| TestCgroup::new(&["cpu"], true));
    let policy = torture_policy(dir.path(), &pids, cg.as_ref().map(|c| c.path()));
    // (component, params, the pid it pauses, if any)
    let mut faults: Vec<(String, String, Option<u32>)> = vec![
        (
            process_pause(),
            format!(r#"{{"pid": {}}}"#, pids[0]),
            Some(pids[0]),
        ),
        (c::MISBEHAVE.to_string(), String::new(), Some(pids[1])),
    ];
    if let Some(pair) = &pair {
        faults.push((
            c::NETWORK_LOSS.to_string(),
            format!(
                r#"{{"netns": "{}", "interfaces": ["{}"], "destinations": ["{}/32"], "ports": ["7500"], "protocol": "udp", "percent": 30}}"#,
                pair.a,
                faultline_tests::netns::A_IF,
                faultline_tests::netns::B_ADDR
            ),
            None,
        ));
    }
    if let Some(cg) = &cg {
        faults.push((
            c::CGROUP_CPU.to_string(),
            format!(r#"{{"path": "{}", "millicores": 250}}"#, cg.path()),
            None,
        ));
    }
    // Warm the compile cache once, so each iteration is quick.
    for (component, _, _) in &faults {
        let out = faultline(&state)
            .args(["inspect", component])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    assert!(
        wait_all(&pids, 'S', Duration::from_secs(2)),
        "targets never went to sleep"
    );
    // The whole snapshot: process states, qdiscs/filters/nft/iptables of both namespaces,
    // the cgroup's limit files.
    let world = || {
        (
            pair.as_ref().map(NetPair::snapshot),
            cg.as_ref().map(TestCgroup::limits),
        )
    };
    let before = Snapshot::take(&pids);
    let before_world = world();
    assert!(before.processes.values().all(|&s| s == 'S'), "{before:?}");
    let (mut paused_at_kill, mut undone, mut slowest) = (0, 0, Duration::ZERO);
    let started = Instant::now();
    for i in 0..n {
        let round = Instant::now();
        let inject_mode = *rng.pick(&["ok", "loop"]);
        let revert_mode = *rng.pick(&["ok", "noop", "trap", "loop", "fail"]);
        faults[1].1 = format!(
            r#"{{"pid": {}, "inject": "{inject_mode}", "revert": "{revert_mode}"}}"#,
            pids[1]
        );
        let delays: Vec<u64> = faults.iter().map(|_| rng.below(301)).collect();
        // All faults run at once, each killed at its own random point after loading: some
        // during inject (always for the looping one), most while injected.
        let killers: Vec<_> = faults
            .iter()
            .zip(&delays)
            .map(|((component, params, pid), &delay)| {
                let child = start_inject(&state, component, params, &policy);
                let pid = *pid;
                std::thread::spawn(move || {
                    let mut child = child;
                    std::thread::sleep(Duration::from_millis(delay));
                    let paused = pid.is_some_and(|p| faultline_tests::proc_state(p) == 'T');
                    child.kill().unwrap(); // SIGKILL: no handler, no revert, no Drop
                    child.wait().unwrap();
                    paused
                })
            })
            .collect();
        for k in killers {
            paused_at_kill += usize::from(k.join().unwrap());
        }
        let (code, report) = recover(&state);
        let context = format!(
            "iteration {i} (seed {}, delays {delays:?}, misbehave inject={inject_mode} revert={revert_mode})",
            rng.seed()
        );
        assert_eq!(code, 0, "{context}: {report}");
        undone += undone_count(&report);
        let diff = before.settle(Duration::from_secs(1));
        assert!(
            diff.is_empty(),
            "{context}: the host differs from before the run:\n{}\n{report}",
            diff.join("\n")
        );
        let after_world = world();
        assert!(
            after_world == before_world,
            "{context}: network or cgroup state differs:\nbefore: {before_world:#?}\nafter: {after_world:#?}\n{report}"
        );
        let left = journal_files(&state);
        assert!(left.is_empty(), "{context}: journals left: {left:?}");
        slowest = slowest.max(round.elapsed());
    }
    eprintln!(
        "crash torture: {n} iterations x {} faults ({}) in {:.1} s (slowest {} ms, seed {}): target paused at kill {paused_at_kill} times, recover undid {undone} changes, 0 differences",
        faults.len(),
        faults
            .iter()
            .map(|(c, _, _)| Path::new(c)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64(),
        slowest.as_millis(),
        rng.seed()
    );
    assert!(
        undone > 0,
        "no iteration left anything to recover: the torture tested nothing"
    );
}

#[test]
fn sigterm_during_inject_reverts() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = policy_file(dir.path(), &[target.pid()]);
    // The fixture pauses the target, then loops inside inject until its deadline.
    let params = format!(r#"{{"pid": {}, "inject": "loop"}}"#, target.pid());
    let child = start_inject(&state, c::MISBEHAVE, &params, &policy);
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(10)));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    eprintln!(
        "SIGTERM during a looping inject: exit {:?} after {} ms",
        out.status.code(),
        took.as_millis()
    );
    // The guest yields every tick, so the signal is acted on at once, not at the inject
    // deadline (2 s), and the revert still runs.
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(target.state(), 'S');
    assert!(journal_files(&state).is_empty());
}

#[test]
fn a_corrupt_or_truncated_journal_is_reported_by_file_and_line_and_the_rest_recovered() {
    use faultline::journal::Journal;
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let journal_dir = state.join("journal");
    let start_time = faultline::capability::process::linux::info(target.pid())
        .unwrap()
        .start_time;
    // A crashed run: it paused the target (entry 1), then wrote more entries.
    let j = Journal::create(&journal_dir).unwrap();
    let inverse =
        serde_json::json!({"kind": "continue", "pid": target.pid(), "start_time": start_time});
    j.begin("ex", "p", "SIGSTOP target", inverse.clone())
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    j.begin("ex", "p", "second", inverse.clone()).unwrap();
    j.begin("ex", "p", "third", inverse).unwrap();
    let path = j.path().to_path_buf();
    drop(j); // outstanding entries: the file stays, unlocked, like after kill -9
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(2)));
    // Line 2: a flipped byte; line 3: binary garbage; then a torn last line.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let pos = lines[1].len() / 2;
    lines[1][pos] ^= 0x04;
    lines[2] = vec![0xff, 0xfe, 0x00, 0x13, 0x37];
    let mut bytes = lines.join(&b'\n');
    bytes.extend_from_slice(b"\n0badc0de {\"op\":\"begin\",\"id\":4,");
    std::fs::write(&path, &bytes).unwrap();
    // And a file that is nothing but garbage, and an empty one.
    let garbage = journal_dir.join("0-1-deadbeef.journal");
    std::fs::write(&garbage, b"\x00\x01\x02 not a journal\nstill not\n").unwrap();
    std::fs::write(journal_dir.join("0-2-00000000.journal"), b"").unwrap();

    let (code, report) = recover(&state);
    // Unreadable lines may hide a change: recovery undoes what it can read, keeps the files
    // aside for a person, and does not claim success.
    assert_eq!(code, 5, "{report}");
    let name = path.display().to_string();
    assert!(
        report.contains(&format!("{name}:2: checksum mismatch")),
        "{report}"
    );
    assert!(report.contains(&format!("{name}:3: not UTF-8")), "{report}");
    assert!(
        !report.contains(&format!("{name}:4:")),
        "a torn last line is no problem: {report}"
    );
    assert!(
        report.contains(&format!("{}:1:", garbage.display())),
        "{report}"
    );
    assert!(
        report.contains("3 journal(s): 1 change(s) undone"),
        "{report}"
    );
    assert!(
        wait_all(&[target.pid()], 'S', Duration::from_secs(2)),
        "{report}"
    );
    let mut left: Vec<String> = journal_files(&state)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    left.sort();
    let mut kept = vec![
        format!("{}.corrupt", garbage.display()),
        format!("{}.corrupt", path.display()),
    ];
    kept.sort();
    assert_eq!(left, kept, "{report}");
    assert!(report.contains("unreadable line(s)"), "{report}");
    // Nothing left to retry: a second recovery is clean.
    let (code, report) = recover(&state);
    assert_eq!(code, 0, "{report}");
    eprintln!("recover on corrupt journals said:\n{report}");
}

/// An agent process (the tests package's [`TestAgent`], with tokens), shut down with SIGTERM
/// (which reverts everything) when dropped.
struct Agent {
    inner: TestAgent,
    addr: String,
    /// The admin token of team `red`, for threads that call the agent.
    token: String,
    first_lines: String,
}

impl Agent {
    fn start(state: &Path, policy: &Path) -> Agent {
        Agent::start_with(state, policy, None)
    }

    /// An agent whose hubs come from `config` (the fixtures hub) instead of the bundled one.
    fn start_with(state: &Path, policy: &Path, config: Option<&Path>) -> Agent {
        let inner = TestAgent::start(Options {
            policy: Some(std::fs::read_to_string(policy).unwrap()),
            hub_config: config.map(Path::to_path_buf),
            state_dir: Some(state.to_path_buf()),
            ..Options::default()
        });
        // The recovery report follows the address line; /readyz answered after both.
        let first_lines = inner.output();
        Agent {
            addr: inner.addr().to_string(),
            token: inner.token(Role::Admin).to_string(),
            first_lines,
            inner,
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.inner.call(method, path, body)
    }

    fn start_pause(&self, pid: u32, extra: &str) -> String {
        let body = format!(
            r#"{{"component": "process-pause", "params": {{"pid": {pid}}}, "duration": "60s"{extra}}}"#
        );
        let (status, v) = self.call("POST", "/v1/runs", &body);
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    fn status(&self, id: &str) -> String {
        let (code, v) = self.call("GET", &format!("/v1/runs/{id}"), "");
        assert_eq!(code, 200, "{v}");
        v["status"].as_str().unwrap().to_string()
    }

    /// kill -9: no handler, no revert.
    fn kill9(&mut self) {
        self.inner.kill9();
    }

    fn terminate(&mut self) -> Option<i32> {
        self.inner.terminate()
    }
}

#[test]
fn agent_recovers_a_crashed_run_before_it_accepts_work() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = policy_file(dir.path(), &[target.pid()]);
    let params = format!(r#"{{"pid": {}}}"#, target.pid());
    let mut child = start_inject(&state, &process_pause(), &params, &policy);
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(10)));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(target.state(), 'T');
    let agent = Agent::start(&state, &policy);
    // The address is printed only after recovery: the target already runs again.
    assert_ne!(target.state(), 'T', "{}", agent.first_lines);
    assert!(
        agent
            .first_lines
            .contains("1 journal(s): 1 change(s) undone"),
        "{}",
        agent.first_lines
    );
}

#[test]
fn agent_crash_torture_kill_9_then_restart_reverts_before_accepting_work() {
    let n = iterations(5);
    let mut rng = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let targets = [Sleeper::start(), Sleeper::start()];
    let pids: Vec<u32> = targets.iter().map(Sleeper::pid).collect();
    let policy = policy_file(dir.path(), &pids);
    assert!(
        wait_all(&pids, 'S', Duration::from_secs(2)),
        "targets never went to sleep"
    );
    let before = Snapshot::take(&pids);
    let hub = faultline_tests::fixture_hub(dir.path());
    let mut agent = Agent::start_with(&state, &policy, Some(&hub));
    let mut undone = 0;
    for i in 0..n {
        let inject_mode = *rng.pick(&["ok", "loop"]);
        let revert_mode = *rng.pick(&["ok", "noop", "trap", "loop", "fail"]);
        agent.start_pause(pids[0], r#", "lease": "30s""#);
        let body = format!(
            r#"{{"component": "fixture-misbehave", "params": {{"pid": {}, "inject": "{inject_mode}", "revert": "{revert_mode}"}}, "duration": "60s"}}"#,
            pids[1]
        );
        let (code, v) = agent.call("POST", "/v1/runs", &body);
        assert_eq!(code, 201, "{v}");
        let delay = rng.below(301);
        std::thread::sleep(Duration::from_millis(delay));
        agent.kill9();
        agent = Agent::start_with(&state, &policy, Some(&hub));
        undone += undone_count(&agent.first_lines);
        let diff = before.settle(Duration::from_secs(1));
        assert!(
            diff.is_empty(),
            "iteration {i} (seed {}, delay {delay} ms, misbehave inject={inject_mode} revert={revert_mode}): the restarted agent left the host changed:\n{}\n{}",
            rng.seed(),
            diff.join("\n"),
            agent.first_lines
        );
    }
    assert_eq!(agent.terminate(), Some(143));
    assert!(journal_files(&state).is_empty());
    eprintln!(
        "agent crash torture: {n} kill -9 + restart cycles (seed {}): {undone} changes undone on restart, 0 differences",
        rng.seed()
    );
    assert!(
        undone > 0,
        "no kill left anything to recover: the torture tested nothing"
    );
}

#[test]
fn agent_lease_lapse_reverts_within_lease_plus_one_second() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &[target.pid()]);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let id = agent.start_pause(target.pid(), r#", "lease": "1s""#);
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(10)));
    // Heartbeats keep it: 2 s of them, twice the lease.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        let (code, v) = agent.call("POST", &format!("/v1/runs/{id}/heartbeat"), "");
        assert_eq!(code, 200, "{v}");
        assert_eq!(target.state(), 'T');
    }
    let last = Instant::now();
    assert!(
        wait_all(&[target.pid()], 'S', Duration::from_secs(2)),
        "still paused 2 s after the last heartbeat"
    );
    let lapsed = last.elapsed();
    eprintln!(
        "lease 1s: reverted {} ms after the last heartbeat",
        lapsed.as_millis()
    );
    assert!(lapsed >= Duration::from_millis(900), "{lapsed:?}");
    let start = Instant::now();
    while agent.status(&id) != "reverted-after-lease-lapse" {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{}",
            agent.status(&id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, v) = agent.call("POST", &format!("/v1/runs/{id}/heartbeat"), "");
    assert_eq!(code, 409, "{v}");
}

#[test]
fn agent_emergency_stop_reverts_and_refuses_until_cleared_and_api_stop_reverts() {
    let targets = [Sleeper::start(), Sleeper::start()];
    let pids: Vec<u32> = targets.iter().map(Sleeper::pid).collect();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &pids);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let a = agent.start_pause(pids[0], "");
    let b = agent.start_pause(pids[1], r#", "lease": "30s""#);
    assert!(wait_all(&pids, 'T', Duration::from_secs(10)));
    let (code, v) = agent.call("POST", "/v1/emergency-stop", r#"{"reason": "test"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["runs"]["stopped"], 2, "{v}");
    assert_eq!(v["runs"]["failures"], serde_json::json!([]), "{v}");
    assert_eq!(v["experiments"]["failures"], serde_json::json!([]), "{v}");
    // The answer comes once everything is reverted.
    assert!(wait_all(&pids, 'S', Duration::from_millis(200)), "{v}");
    assert_eq!(agent.status(&a), "emergency-stopped");
    assert_eq!(agent.status(&b), "emergency-stopped");
    let body = format!(
        r#"{{"component": "process-pause", "params": {{"pid": {}}}}}"#,
        pids[0]
    );
    let (code, v) = agent.call("POST", "/v1/runs", &body);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("emergency stop: test"),
        "{v}"
    );
    assert_eq!(targets[0].state(), 'S');
    // Host-wide: the marker every `faultline run` obeys is set while the agent's stop holds.
    let marker = dir.path().join("state/emergency-stop");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "test");
    let (code, v) = agent.call("DELETE", "/v1/emergency-stop", "");
    assert_eq!((code, v["cleared"].as_bool()), (200, Some(true)), "{v}");
    assert!(!marker.exists(), "cleared with the agent's stop");
    // Accepting again; an API stop reverts and answers once reverted.
    let c = agent.start_pause(pids[0], "");
    assert!(wait_all(&pids[..1], 'T', Duration::from_secs(10)));
    let (code, v) = agent.call("POST", &format!("/v1/runs/{c}/stop"), "");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "stopped", "{v}");
    assert_eq!(targets[0].state(), 'S');
}

#[test]
fn agent_emergency_stop_cuts_a_looping_inject_short() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &[target.pid()]);
    let hub = faultline_tests::fixture_hub(dir.path());
    let agent = Agent::start_with(&dir.path().join("state"), &policy, Some(&hub));
    let body = format!(
        r#"{{"component": "fixture-misbehave", "params": {{"pid": {}, "inject": "loop"}}}}"#,
        target.pid()
    );
    let (code, v) = agent.call("POST", "/v1/runs", &body);
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(10)));
    assert_eq!(agent.status(&id), "injecting");
    let start = Instant::now();
    let (code, v) = agent.call("POST", "/v1/emergency-stop", "");
    assert_eq!(code, 200, "{v}");
    // Well before the 2 s inject deadline.
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(target.state(), 'S');
    assert_eq!(agent.status(&id), "emergency-stopped");
}

#[test]
fn agent_sigterm_reverts_everything_and_exits_143() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = policy_file(dir.path(), &[target.pid()]);
    let mut agent = Agent::start(&state, &policy);
    agent.start_pause(target.pid(), "");
    assert!(wait_all(&[target.pid()], 'T', Duration::from_secs(10)));
    assert_eq!(agent.terminate(), Some(143));
    assert_eq!(target.state(), 'S');
    assert!(journal_files(&state).is_empty());
}

#[test]
fn agent_answers_malformed_requests_with_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &[]);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "/v1/runs",
            "{not json",
            400,
            "invalid JSON body: field `?`: key must be a string at line 1 column 2",
        ),
        ("POST", "/v1/runs", "", 400, "invalid JSON body: EOF"),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "x", "bogus": 1}"#,
            400,
            "unknown field `bogus`",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"params": {}}"#,
            400,
            "missing field `component`",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "/nonexistent.wasm"}"#,
            400,
            "must be a hub reference",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "no-such-fault"}"#,
            400,
            "no package matches `no-such-fault`",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "x", "lease": "500ms"}"#,
            400,
            "shorter than the minimum of 1s",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "x", "duration": "soon"}"#,
            400,
            "field `duration`: \"soon\" is not a duration",
        ),
        (
            "POST",
            "/v1/runs",
            r#"{"component": "x", "params": [1]}"#,
            400,
            "params must be a JSON object",
        ),
        ("GET", "/v1/runs/nope", "", 404, "no run with id \"nope\""),
        ("PUT", "/v1/runs", "", 405, "PUT is not allowed on /v1/runs"),
        ("GET", "/v2/x", "", 404, "no such route"),
        ("POST", "/v1/emergency-stop", "[", 400, "invalid JSON body"),
    ];
    for (method, path, body, code, needle) in cases {
        let (got, v) = agent.call(method, path, body);
        let msg = v["error"].as_str().unwrap_or_default();
        assert_eq!(got, *code, "{method} {path} {body}: {v}");
        assert!(msg.contains(needle), "{method} {path} {body}: {msg}");
    }
    // Malformed HTTP never reaches a handler: hyper answers 400 (its parser names no detail)
    // and closes; a body cut short is the handler's 400 naming it.
    for (raw, needle) in [
        (&b"garbage\r\n\r\n"[..], ""),
        (b"GET / SPDY/9\r\nHost: localhost\r\n\r\n", ""),
        (
            b"POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nContent-Length: ten\r\n\r\n",
            "",
        ),
        (
            b"POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{}",
            "",
        ),
        (
            b"POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nNoColon\r\n\r\n",
            "",
        ),
        (b"\xff\xfe / HTTP/1.1\r\n\r\n", ""),
    ] {
        let mut stream = std::net::TcpStream::connect(&agent.addr).unwrap();
        use std::io::Write;
        stream.write_all(raw).unwrap();
        // Half-close so a short body is seen as ended.
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut text = String::new();
        use std::io::Read;
        stream.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 4"), "{:?}: {text}", String::from_utf8_lossy(raw));
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (code, v) = agent.call("GET", "/v1/status", "");
    assert_eq!(
        (code, v["accepting"].as_bool()),
        (200, Some(true)),
        "still serving: {v}"
    );
}

#[test]
fn abort_timing_for_1_10_and_100_concurrent_faults() {
    let targets: Vec<Sleeper> = (0..100).map(|_| Sleeper::start()).collect();
    let pids: Vec<u32> = targets.iter().map(Sleeper::pid).collect();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &pids);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let mut figures = Vec::new();
    for n in [1usize, 10, 100] {
        let pids = &pids[..n];
        for &pid in pids {
            agent.start_pause(pid, "");
        }
        assert!(
            wait_all(pids, 'T', Duration::from_secs(30)),
            "{n} runs never all paused"
        );
        let start = Instant::now();
        let (code, v) = agent.call("POST", "/v1/emergency-stop", "");
        let answered = start.elapsed();
        assert_eq!(code, 200, "{v}");
        assert!(
            wait_all(pids, 'S', Duration::from_secs(10)),
            "{n}: not all resumed"
        );
        let all_running = start.elapsed();
        assert_eq!(v["runs"]["stopped"], n, "{v}");
        figures.push(format!(
            "{n:>3} concurrent process-pause faults: emergency stop answered (all reverted) in {:.1} ms (agent-side {:.1} ms); every target running again after {:.1} ms",
            answered.as_secs_f64() * 1000.0,
            v["runs"]["reverted_in_ms"].as_f64().unwrap_or(f64::NAN),
            all_running.as_secs_f64() * 1000.0
        ));
        let (code, _) = agent.call("DELETE", "/v1/emergency-stop", "");
        assert_eq!(code, 200);
    }
    eprintln!(
        "abort timing (debug build of the test binary's agent):\n{}",
        figures.join("\n")
    );
}

/// Promise 5: after a reboot (another boot id in the journal), recovery checks each change:
/// what the reboot already undid is dropped, what survived is reverted.
#[test]
fn after_a_reboot_recovery_drops_what_the_reboot_undid_and_reverts_what_survived() {
    use faultline::journal::Journal;
    let survivor = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let start_time = |pid: u32| {
        faultline::capability::process::linux::info(pid)
            .unwrap()
            .start_time
    };
    let j = Journal::create_for_boot(&state.join("journal"), "boot-before-the-reboot").unwrap();
    // A process from the old boot: its pid now names a process with another start time.
    let stale = serde_json::json!({"kind": "continue", "pid": survivor.pid(), "start_time": start_time(survivor.pid()) + 1});
    j.begin("ex", "p", "SIGSTOP a process of the old boot", stale)
        .unwrap();
    // A change that outlived the "reboot": the process is still there and still stopped.
    let live = serde_json::json!({"kind": "continue", "pid": survivor.pid(), "start_time": start_time(survivor.pid())});
    j.begin("ex", "p", "SIGSTOP survivor", live).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(survivor.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    drop(j);
    assert!(wait_all(&[survivor.pid()], 'T', Duration::from_secs(2)));
    let (code, report) = recover(&state);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("1 change(s) undone, 1 already undone by a reboot"),
        "{report}"
    );
    assert!(
        wait_all(&[survivor.pid()], 'S', Duration::from_secs(2)),
        "{report}"
    );
    assert!(journal_files(&state).is_empty(), "{report}");
}

/// Promise 6: an undo that fails is reported with what to do by hand, recovery exits 5, and the
/// entry stays in the journal so the next recovery retries it.
#[test]
fn a_failed_undo_is_reported_with_manual_steps_and_kept_for_the_next_recovery() {
    use faultline::journal::Journal;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let j = Journal::create(&state.join("journal")).unwrap();
    // An inverse this host cannot apply (say, written by a newer agent).
    let inverse = serde_json::json!({"kind": "from-a-newer-agent", "setting": 42});
    j.begin("ex", "p", "a change this host cannot undo", inverse)
        .unwrap();
    drop(j);
    for attempt in 1..=2 {
        let (code, report) = recover(&state);
        assert_eq!(code, 5, "attempt {attempt}: {report}");
        assert!(
            report.contains("a change this host cannot undo") && report.contains("undo by hand"),
            "attempt {attempt}: {report}"
        );
        assert!(
            report.contains("from-a-newer-agent"),
            "the manual steps show the recorded inverse: {report}"
        );
        assert_eq!(
            journal_files(&state).len(),
            1,
            "attempt {attempt}: the entry stays journalled: {report}"
        );
    }
}

#[test]
fn agent_refuses_host_paths_without_reading_or_quoting_them() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &[]);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let fifo = dir.path().join("fifo.wasm");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let first_line = shadow.lines().next().unwrap_or("root:").to_string();
    for path in [
        "/etc/shadow".to_string(),
        "/dev/zero".to_string(),
        "../../etc/passwd".to_string(),
        fifo.display().to_string(),
    ] {
        let start = Instant::now();
        let (code, v) = agent.call(
            "POST",
            "/v1/runs",
            &serde_json::json!({ "component": path }).to_string(),
        );
        let body = v.to_string();
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("must be a hub reference"), "{path}: {body}");
        assert!(
            !body.contains(&first_line) && !body.contains(&path),
            "{path}: the refusal quotes the request or a file: {body}"
        );
        // A FIFO is never opened: no writer is needed for the answer.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            start.elapsed()
        );
    }
    let (code, v) = agent.call("GET", "/v1/status", "");
    assert_eq!(code, 200, "{v}");
}

#[test]
fn agent_keeps_answering_while_two_network_faults_and_a_freeze_inject_at_once() {
    use faultline_tests::cgroups::TestCgroup;
    use faultline_tests::netns::{A_IF, B_ADDR, NetPair};
    if !faultline_tests::privileged(
        "agent_keeps_answering_while_two_network_faults_and_a_freeze_inject_at_once",
    ) {
        return;
    }
    let pairs = [NetPair::new("conc1"), NetPair::new("conc2")];
    let cg = TestCgroup::new(&["freezer"], true);
    let net_before: Vec<String> = pairs.iter().map(NetPair::snapshot).collect();
    let cg_before = cg.limits();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"network\", \"cgroup\"]\n\
             network = {{ namespaces = [\"named:flt-*\"], interfaces = [\"{A_IF}\"] }}\n\
             cgroup = {{ subtrees = [\"{}\"] }}\n",
            cg.path()
        ),
    )
    .unwrap();
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let towards_b = |pair: &NetPair, extra: &str| {
        format!(
            r#"{{"netns": "{}", "interfaces": ["{A_IF}"], "destinations": ["{B_ADDR}/32"], {extra}}}"#,
            pair.a
        )
    };
    let runs = [
        ("network-delay", towards_b(&pairs[0], r#""delay_ms": 100"#)),
        ("network-loss", towards_b(&pairs[1], r#""percent": 30"#)),
        ("cgroup-freeze", format!(r#"{{"path": "{}"}}"#, cg.path())),
    ];
    let starters: Vec<_> = runs
        .iter()
        .map(|(component, params)| {
            let (addr, token) = (agent.addr.clone(), agent.token.clone());
            let body =
                format!(r#"{{"component": "{component}", "params": {params}, "duration": "2s"}}"#);
            std::thread::spawn(move || {
                let (code, v) = call_tcp(&addr, &token, "POST", "/v1/runs", &body);
                assert_eq!(code, 201, "{body}: {v}");
                v["id"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let ids: Vec<String> = starters.into_iter().map(|t| t.join().unwrap()).collect();
    // Loading (a Cranelift compile on a cold cache) is behind us: from here on the runs inject,
    // hold and revert, and every `ip`, `tc`, `nft`, freezer wait and fsync happens now.
    // Measure /v1/status (a fresh connection each time) all through.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, token, done) = (agent.addr.clone(), agent.token.clone(), stop.clone());
    let prober = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut calls = 0u32;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let start = Instant::now();
            let (code, v) = call_tcp(&addr, &token, "GET", "/v1/status", "");
            assert_eq!(code, 200, "{v}");
            worst = worst.max(start.elapsed());
            calls += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (worst, calls)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        loop {
            let status = agent.status(id);
            if status == "completed" {
                break;
            }
            assert!(
                !["error", "stopped"].contains(&status.as_str()),
                "run {id}: {status}"
            );
            assert!(Instant::now() < deadline, "run {id} never completed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, calls) = prober.join().unwrap();
    eprintln!(
        "/v1/status while 2 network faults and a freeze injected and reverted: {calls} calls, worst {:.1} ms",
        worst.as_secs_f64() * 1000.0
    );
    assert!(
        worst < Duration::from_millis(500),
        "the API stalled for {worst:?} while faults ran"
    );
    let net_after: Vec<String> = pairs.iter().map(NetPair::snapshot).collect();
    assert_eq!(net_after, net_before, "namespaces as before");
    assert_eq!(cg.limits(), cg_before, "cgroup as before");
}

#[test]
fn agent_keeps_a_bounded_set_of_finished_runs() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), &[target.pid()]);
    let agent = Agent::start(&dir.path().join("state"), &policy);
    let body = format!(
        r#"{{"component": "process-pause", "params": {{"pid": {}}}, "duration": "1ms"}}"#,
        target.pid()
    );
    let mut ids = Vec::new();
    // One after another: runs pausing the same process at once would race each other.
    for i in 0..300 {
        let (code, v) = agent.call("POST", "/v1/runs", &body);
        assert_eq!(code, 201, "run {i}: {v}");
        let id = v["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.status(&id) != "completed" {
            assert!(Instant::now() < deadline, "run {i} never completed");
            std::thread::sleep(Duration::from_millis(2));
        }
        ids.push(id);
    }
    let (code, v) = agent.call("GET", "/v1/runs", "");
    assert_eq!(code, 200, "{v}");
    let kept: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    // Pruning happens as a run starts: the newest 256 finished runs stay, plus the newest one.
    assert_eq!(kept.len(), 257, "{} runs kept", kept.len());
    assert_eq!(
        kept,
        ids[300 - 257..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let (code, _) = agent.call("GET", &format!("/v1/runs/{}", ids[0]), "");
    assert_eq!(code, 404, "the oldest finished run was dropped");
    assert_eq!(target.state(), 'S');
}
