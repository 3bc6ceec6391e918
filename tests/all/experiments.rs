//! Experiments end to end through the real binary: `faultline run` and `faultline demo` on real
//! processes, real HTTP services on loopback, the bundled hub, a real SQLite history.

use faultline_tests::{DemoService, Sleeper, privileged, proc_state};
use serde_json::Value;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

fn faultline(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir").arg(state).args(args);
    cmd.env("NO_COLOR", "1");
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A policy granting process-pause these pids and the probes these loopback ports.
fn policy(dir: &Path, pids: &[u32], ports: &[u16]) -> PathBuf {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let ports: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    let mut text = format!(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n",
        pids.join(", ")
    );
    for probe in ["http-probe", "tcp-probe"] {
        text.push_str(&format!(
            "\n[[grant]]\ncomponent = \"{probe}@^0.1\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [{}] }}\n",
            ports.join(", ")
        ));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// `faultline run FILE --json --policy P`, its exit code and its JSON journal.
fn run_json(state: &Path, file: &Path, policy: &Path) -> (Option<i32>, Value, String) {
    let out = faultline(state, &["run", "--json", "--policy"])
        .arg(policy)
        .arg(file)
        .output()
        .unwrap();
    (out.status.code(), journal_of(&out), text(&out))
}

/// `faultline run --json` started, its output piped.
fn spawn_json(state: &Path, file: &Path, policy: &Path) -> Child {
    faultline(state, &["run", "--json", "--policy"])
        .arg(policy)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The JSON journal a finished `faultline run --json` printed last.
fn journal_of(out: &Output) -> Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no journal: {}", text(out)))
}

fn record(journal: &Value) -> &Value {
    journal.get("record").unwrap_or(journal)
}

fn fault<'a>(journal: &'a Value, name: &str) -> &'a Value {
    record(journal)["faults"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no fault {name} in {journal}"))
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_demo_sees_the_paused_service_fail_and_recover_with_a_score() {
    if !privileged("the_demo_sees_the_paused_service_fail_and_recover_with_a_score") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("demo.html");
    let out = faultline(dir.path(), &["demo", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("demo passed"), "{said}");
    assert!(said.contains("resilience score 50.0"), "{said}");
    assert!(said.contains("FAILED"), "{said}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("pause-service"), "{page}");
    // The report of this real run, drawn by a real browser: the fault's bar, failed marks
    // while it was paused, passed ones around it.
    let test = "experiments::the_demo_sees_the_paused_service_fail_and_recover_with_a_score";
    let Some(binary) = crate::report::tool(test, "chromium", "chromium") else {
        return;
    };
    let chromium = crate::report::Chromium {
        binary,
        dir: dir.path().to_path_buf(),
    };
    let dom = String::from_utf8(chromium.run(&html, &["--dump-dom".into()])).unwrap();
    let count = |class: &str| dom.matches(&format!("class=\"{class}\"")).count();
    assert_eq!(count("bar fault completed-with-error"), 1, "{dom}");
    assert!(count("mark failed") >= 1, "{dom}");
    assert!(count("mark passed") >= 4, "{dom}");
}

const PAUSE_THEN_MORE: &str = r#"
apiVersion: faultline/v1
kind: Experiment
name: stop me
lanes:
  - name: main
    steps:
      - name: first-pause
        fault: process-pause@^0.1
        duration: 60s
        targets: { pids: [PID] }
      - name: second-pause
        fault: process-pause@^0.1
        duration: 60s
        targets: { pids: [PID] }
probes:
  - name: answers
    probe: tcp-probe@^0.1
    params: { host: "127.0.0.1", port: PORT }
    mode: edge
"#;

/// A sleeper to pause, a service the probe checks, and [`PAUSE_THEN_MORE`] with its policy
/// written for them.
struct PauseThenMore {
    dir: tempfile::TempDir,
    target: Sleeper,
    service: DemoService,
    file: PathBuf,
    policy: PathBuf,
}

impl PauseThenMore {
    fn new(name: &str) -> PauseThenMore {
        let (dir, target, service) = (
            tempfile::tempdir().unwrap(),
            Sleeper::start(),
            DemoService::start(BIN),
        );
        let body = PAUSE_THEN_MORE
            .replace("PID", &target.pid().to_string())
            .replace("PORT", &service.port.to_string());
        let file = write(dir.path(), &format!("{name}.yaml"), &body);
        let policy = policy(dir.path(), &[target.pid()], &[service.port]);
        PauseThenMore {
            dir,
            target,
            service,
            file,
            policy,
        }
    }
}

#[test]
fn sigterm_mid_run_reverts_everything_and_skips_later_steps() {
    if !privileged("sigterm_mid_run_reverts_everything_and_skips_later_steps") {
        return;
    }
    let PauseThenMore {
        dir,
        target,
        service: _service,
        file,
        policy,
    } = PauseThenMore::new("stop");
    let child = spawn_json(dir.path(), &file, &policy);
    assert!(wait_until(Duration::from_secs(30), || target.state() == 'T'));
    // Past inject: the run holds the fault now.
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(143), "{said}");
    assert!(sent.elapsed() < Duration::from_secs(10), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
    let journal = journal_of(&out);
    let r = record(&journal);
    assert_eq!(r["status"], "stopped", "{said}");
    assert_eq!(r["end_state"], "CANCELED", "{said}");
    assert_eq!(
        fault(&journal, "first-pause")["status"],
        "stopped",
        "{said}"
    );
    assert_eq!(
        fault(&journal, "second-pause")["status"],
        "skipped",
        "{said}"
    );
    let activities = r["activities"].as_array().unwrap();
    assert_eq!(activities[1]["status"], "skipped", "{said}");
}

#[test]
fn a_stop_on_failure_probe_ends_the_run_and_reverts() {
    if !privileged("a_stop_on_failure_probe_ends_the_run_and_reverts") {
        return;
    }
    let (dir, target, service) = (
        tempfile::tempdir().unwrap(),
        Sleeper::start(),
        DemoService::start(BIN),
    );
    // The probe checks the paused process's own service: the pause makes it fail.
    let body = format!(
        r#"
apiVersion: faultline/v1
kind: Experiment
name: stop on failure
lanes:
  - steps:
      - name: pause-service
        fault: process-pause@^0.1
        duration: 60s
        targets: {{ pids: [{svc}] }}
      - name: never
        fault: process-pause@^0.1
        duration: 60s
        targets: {{ pids: [{sleeper}] }}
probes:
  - name: service-answers
    probe: http-probe@^0.1
    params: {{ url: "http://127.0.0.1:{port}/", timeout: 300ms }}
    mode: on-chaos
    interval: 200ms
    timeout: 2s
    stop_on_failure: true
"#,
        svc = service.pid(),
        sleeper = target.pid(),
        port = service.port
    );
    let file = write(dir.path(), "sof.yaml", &body);
    let policy = policy(dir.path(), &[service.pid(), target.pid()], &[service.port]);
    let start = Instant::now();
    let (code, journal, said) = run_json(dir.path(), &file, &policy);
    assert_eq!(code, Some(1), "{said}");
    assert!(start.elapsed() < Duration::from_secs(30), "{said}");
    let r = record(&journal);
    assert_eq!(r["status"], "stopped", "{said}");
    assert_eq!(r["end_state"], "FAILED", "{said}");
    assert!(
        r["reason"].as_str().unwrap().contains("service-answers"),
        "{said}"
    );
    assert_eq!(
        fault(&journal, "pause-service")["status"],
        "stopped",
        "{said}"
    );
    assert_eq!(fault(&journal, "never")["status"], "skipped", "{said}");
    assert_ne!(proc_state(service.pid()), 'T', "{said}");
    assert_eq!(target.state(), 'S', "{said}");
}

#[test]
fn a_target_that_does_not_resolve_refuses_the_run_and_injects_nothing() {
    if !privileged("a_target_that_does_not_resolve_refuses_the_run_and_injects_nothing") {
        return;
    }
    let (dir, target) = (tempfile::tempdir().unwrap(), Sleeper::start());
    // A pid that just exited: nothing lives there.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let body = format!(
        r#"
apiVersion: faultline/v1
kind: Experiment
name: unresolved
lanes:
  - steps:
      - name: pause-real
        fault: process-pause@^0.1
        duration: 10s
        targets: {{ pids: [{real}] }}
      - name: pause-gone
        fault: process-pause@^0.1
        duration: 10s
        targets: {{ pids: [{gone_pid}] }}
"#,
        real = target.pid()
    );
    let file = write(dir.path(), "unresolved.yaml", &body);
    let policy = policy(dir.path(), &[target.pid(), gone_pid], &[9]);
    let out = faultline(dir.path(), &["run", "--policy"])
        .arg(&policy)
        .arg(&file)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("step pause-gone"), "{said}");
    assert!(said.contains("no target matches"), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
    let list = faultline(dir.path(), &["executions", "list", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap_or(Value::Null);
    assert_eq!(listed, serde_json::json!([]), "{}", text(&list));
}

#[test]
fn dry_run_prints_targets_and_grants_and_injects_nothing() {
    if !privileged("dry_run_prints_targets_and_grants_and_injects_nothing") {
        return;
    }
    let PauseThenMore {
        dir,
        target,
        service: _service,
        file,
        policy,
    } = PauseThenMore::new("dry");
    let out = faultline(dir.path(), &["run", "--dry-run", "--policy"])
        .arg(&policy)
        .arg(&file)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("target pid {}", target.pid())),
        "{said}"
    );
    assert!(said.contains("covered by grant 1"), "{said}");
    assert!(said.contains("nothing was injected"), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
}

#[test]
fn history_survives_a_restart_and_two_runs_at_once() {
    if !privileged("history_survives_a_restart_and_two_runs_at_once") {
        return;
    }
    let (dir, service) = (tempfile::tempdir().unwrap(), DemoService::start(BIN));
    let file = write(
        dir.path(),
        "probe-only.yaml",
        &format!(
            r#"
apiVersion: faultline/v1
kind: Experiment
name: steady
lanes:
  - steps:
      - wait: 1s
      - name: look
        probe: http-probe@^0.1
        params: {{ url: "http://127.0.0.1:{}/" }}
"#,
            service.port
        ),
    );
    let policy = policy(dir.path(), &[1], &[service.port]);
    let runs: Vec<Child> = (0..2)
        .map(|_| spawn_json(dir.path(), &file, &policy))
        .collect();
    let mut ids = Vec::new();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "{said}");
        let journal = journal_of(&out);
        assert_eq!(record(&journal)["status"], "completed", "{said}");
        ids.push(record(&journal)["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    // A new process (the restart) reads both back.
    let list = faultline(dir.path(), &["executions", "list", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    for id in &ids {
        assert!(listed_ids.contains(&id.as_str()), "{listed}");
        let show = faultline(dir.path(), &["executions", "show", id, "--json"])
            .output()
            .unwrap();
        let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(shown["status"], "completed", "{}", text(&show));
        let log = faultline(dir.path(), &["executions", "log", id])
            .output()
            .unwrap();
        assert!(text(&log).contains("look passed"), "{}", text(&log));
    }
}

#[test]
fn a_run_killed_mid_run_is_closed_as_errored_and_its_fault_reverted() {
    if !privileged("a_run_killed_mid_run_is_closed_as_errored_and_its_fault_reverted") {
        return;
    }
    let PauseThenMore {
        dir,
        target,
        service: _service,
        file,
        policy,
    } = PauseThenMore::new("crash");
    let mut child = faultline(dir.path(), &["run", "--policy"])
        .arg(&policy)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = first
        .trim()
        .strip_prefix("execution ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    assert!(wait_until(Duration::from_secs(30), || target.state() == 'T'));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(target.state(), 'T', "a kill -9 leaves the pause in place");
    // The next faultline process closes the record and recovery reverts the pause.
    let recover = faultline(dir.path(), &["recover"]).output().unwrap();
    assert_eq!(recover.status.code(), Some(0), "{}", text(&recover));
    assert_eq!(target.state(), 'S', "{}", text(&recover));
    let show = faultline(dir.path(), &["executions", "show", &id, "--json"])
        .output()
        .unwrap();
    let shown: Value =
        serde_json::from_slice(&show.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&show)));
    assert_eq!(shown["status"], "error", "{shown}");
    assert_eq!(shown["end_state"], "ERRORED", "{shown}");
    assert!(
        shown["reason"].as_str().unwrap_or_default().contains("pid"),
        "{shown}"
    );
}

#[test]
fn an_emergency_stop_refuses_new_runs_and_stops_a_running_one() {
    if !privileged("an_emergency_stop_refuses_new_runs_and_stops_a_running_one") {
        return;
    }
    let PauseThenMore {
        dir,
        target,
        service: _service,
        file,
        policy,
    } = PauseThenMore::new("estop");
    let set = faultline(dir.path(), &["emergency-stop", "--reason", "game day over"])
        .output()
        .unwrap();
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    let refused = faultline(dir.path(), &["run", "--policy"])
        .arg(&policy)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("game day over"),
        "{}",
        text(&refused)
    );
    assert_eq!(target.state(), 'S');
    // `faultline inject` obeys it too.
    let inject = faultline(dir.path(), &["inject", "process-pause", "--policy"])
        .arg(&policy)
        .args([
            "--param",
            &format!("pid={}", target.pid()),
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(inject.status.code(), Some(3), "{}", text(&inject));
    assert!(text(&inject).contains("game day over"), "{}", text(&inject));
    let clear = faultline(dir.path(), &["emergency-stop", "--clear"])
        .output()
        .unwrap();
    assert_eq!(clear.status.code(), Some(0), "{}", text(&clear));
    let child = spawn_json(dir.path(), &file, &policy);
    assert!(wait_until(Duration::from_secs(30), || target.state() == 'T'));
    let set = faultline(dir.path(), &["emergency-stop"]).output().unwrap();
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(8), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
    let journal = journal_of(&out);
    assert_eq!(record(&journal)["end_state"], "CANCELED", "{said}");
    assert_eq!(
        fault(&journal, "second-pause")["status"],
        "skipped",
        "{said}"
    );
}

/// Runs `examples/<name>/run.sh` with this build's binary and a private state directory.
fn example(name: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let script = faultline_tests::repo_root().join(format!("examples/{name}/run.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .env("FAULTLINE", BIN)
        .env("FAULTLINE_STATE_DIR", dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn the_cgroup_example_runs_here_and_completes() {
    if !privileged("the_cgroup_example_runs_here_and_completes") {
        return;
    }
    let (code, said) = example("cgroup-cpu");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("COMPLETED"), "{said}");
    assert!(said.contains("cap-cpu"), "{said}");
    assert!(
        !Path::new("/sys/fs/cgroup/cpu/faultline-example").exists(),
        "{said}"
    );
}

#[test]
fn the_network_example_runs_here_and_completes() {
    if !privileged("the_network_example_runs_here_and_completes") {
        return;
    }
    let (code, said) = example("network-bandwidth");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("COMPLETED"), "{said}");
    assert!(said.contains("narrow-link"), "{said}");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!text(&netns).contains("fl-example"), "{said}");
}

#[test]
fn a_target_gone_since_the_pre_run_check_is_not_touched() {
    if !privileged("a_target_gone_since_the_pre_run_check_is_not_touched") {
        return;
    }
    let (dir, mut target, service) = (
        tempfile::tempdir().unwrap(),
        Sleeper::start(),
        DemoService::start(BIN),
    );
    let pid = target.pid();
    let body = format!(
        r#"
apiVersion: faultline/v1
kind: Experiment
name: gone
lanes:
  - steps:
      - wait: 2s
      - name: pause-gone
        fault: process-pause@^0.1
        duration: 5s
        targets: {{ pids: [{pid}] }}
probes:
  - name: answers
    probe: tcp-probe@^0.1
    params: {{ host: "127.0.0.1", port: {port} }}
    mode: end-of-test
"#,
        port = service.port
    );
    let file = write(dir.path(), "gone.yaml", &body);
    let policy = policy(dir.path(), &[pid], &[service.port]);
    let child = spawn_json(dir.path(), &file, &policy);
    // The checks passed (the run is waiting); now the target goes away.
    std::thread::sleep(Duration::from_millis(1200));
    target.0.kill().unwrap();
    target.0.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    let journal = journal_of(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    let f = fault(&journal, "pause-gone");
    assert_eq!(f["status"], "error", "{said}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("no longer the process"),
        "{said}"
    );
    assert!(
        f["targets"][0]["execution"].is_null(),
        "never injected: {said}"
    );
}
