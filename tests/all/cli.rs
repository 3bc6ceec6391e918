//! The `faultline` binary end to end: real processes, real signals, exit codes.

use faultline_tests::wait_state;
use faultline_tests::{Sleeper, components as c, repo_root};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

fn policy_file(dir: &std::path::Path, pid: u32) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{pid}], signals = [\"stop\"] }}\n"
        ),
    )
    .unwrap();
    path
}

fn faultline(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir").arg(dir.join("state")).args(args);
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn bundled(name: &str) -> String {
    repo_root()
        .join(format!("hub/components/{name}-0.1.0.wasm"))
        .display()
        .to_string()
}

#[test]
fn inject_pauses_a_real_process_for_the_duration_then_resumes_it() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), target.pid());
    let pid = target.pid().to_string();
    let component = bundled("process-pause");
    let child = faultline(dir.path(), &["inject", &component, "--param"])
        .arg(format!("pid={pid}"))
        .args(["--duration", "1500ms", "--policy"])
        .arg(&policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_state(target.pid(), 'T', Duration::from_secs(20)),
        "the target was never stopped"
    );
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("injected process-pause@0.1.0"), "{said}");
    assert!(said.contains("reverted in"), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
}

#[test]
fn sigterm_while_injected_reverts_at_once() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), target.pid());
    let child = faultline(dir.path(), &["inject", &bundled("process-pause")])
        .arg("--param")
        .arg(format!("pid={}", target.pid()))
        .args(["--duration", "10m", "--policy"])
        .arg(&policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal only once inject has returned: the stopped state alone shows up while inject is
    // still running, and a SIGTERM then takes the "during inject" path instead.
    let mut child = child;
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = String::new();
    while !said.contains("injected process-pause") {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => said.push_str(&format!("{line}\n")),
            Err(e) => panic!("never injected ({e}): {said}"),
        }
    }
    assert_eq!(target.state(), 'T', "{said}");
    let sent = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    said.extend(lines.try_iter().map(|l| format!("{l}\n")));
    said.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(143), "{said}");
    assert!(sent.elapsed() < Duration::from_secs(5), "{said}");
    assert!(said.contains("SIGTERM: reverting early"), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
}

#[test]
fn a_looping_fault_is_cut_off_and_reverted_with_exit_code_4() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), target.pid());
    let start = Instant::now();
    let out = faultline(
        dir.path(),
        &["inject", c::MISBEHAVE, "--param", "inject=\"loop\""],
    )
    .arg("--param")
    .arg(format!("pid={}", target.pid()))
    .args(["--call-timeout", "1s", "--duration", "1s", "--policy"])
    .arg(&policy)
    .output()
    .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(
        said.contains("inject ran past its deadline of 1s and was cut off"),
        "{said}"
    );
    assert!(start.elapsed() < Duration::from_secs(15), "{said}");
    assert_eq!(target.state(), 'S', "{said}");
}

#[test]
fn inspect_gives_the_verdict_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = faultline(dir.path(), &["inspect", c::NO_REVERT])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("refused: component does not export 'revert'"));
    let out = faultline(dir.path(), &["inspect", &bundled("process-kill"), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "fault");
    assert_eq!(v["description"]["revertible"], false);
    assert_eq!(v["description"]["name"], "process-kill");
}

#[test]
fn bad_input_gets_exit_code_2_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = faultline(dir.path(), &["inject", "/nonexistent.wasm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cannot read component /nonexistent.wasm"));
    let out = faultline(
        dir.path(),
        &["inject", &bundled("process-pause"), "--param", "novalue"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is not key=value"), "{}", text(&out));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[grant]]\ncomponent = 3\n").unwrap();
    let out = faultline(
        dir.path(),
        &["inject", &bundled("process-pause"), "--policy"],
    )
    .arg(&bad)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("invalid policy"), "{}", text(&out));
}

#[test]
fn demo_json_shows_the_probe_failing_only_while_the_service_is_paused() {
    let dir = tempfile::tempdir().unwrap();
    let out = faultline(dir.path(), &["demo", "--json"]).output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let journal: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no journal: {said}"));
    let target = &journal["faults"][0]["targets"][0];
    let (from, to) = (
        target["injected_ms"].as_u64().unwrap(),
        target["reverted_ms"].as_u64().unwrap(),
    );
    assert!(to - from >= 3000, "held 3 s: {target}");
    let checks = journal["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "service-answers")
        .unwrap()["checks"]
        .as_array()
        .unwrap()
        .clone();
    let at = |c: &serde_json::Value| c["at_ms"].as_u64().unwrap();
    let failed: Vec<u64> = checks
        .iter()
        .filter(|c| c["verdict"] == "failed")
        .map(at)
        .collect();
    assert!(!failed.is_empty(), "{checks:?}");
    // A check that began up to its 1 s timeout before the pause may still have met it.
    for t in &failed {
        assert!(
            *t + 1000 >= from && *t <= to,
            "failed outside the pause: {t} not in {from}..{to}"
        );
    }
    assert!(
        checks
            .iter()
            .any(|c| c["verdict"] == "passed" && at(c) > to),
        "recovered: {checks:?}"
    );
    assert_eq!(journal["end_state"], "FAILED", "{said}");
    assert!(
        (journal["score"].as_f64().unwrap() - 50.0).abs() < 1e-9,
        "{said}"
    );
}

#[test]
fn a_local_file_gets_no_name_grant_and_a_hub_reference_does() {
    let target = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("by-name.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\", \"cont\"] }}\n",
            target.pid()
        ),
    )
    .unwrap();
    let params = format!("pid={}", target.pid());
    let policy_arg = policy.display().to_string();
    // The published bytes as a file: known by digest only, so the name grant does not apply.
    let file = bundled("process-pause");
    let out = faultline(
        dir.path(),
        &[
            "inject",
            &file,
            "--param",
            &params,
            "--duration",
            "0s",
            "--policy",
            &policy_arg,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("not grant to local file sha256:"),
        "{}",
        text(&out)
    );
    // The same component by hub reference: a verified release, granted by name.
    let out = faultline(
        dir.path(),
        &[
            "inject",
            "process-pause",
            "--param",
            &params,
            "--duration",
            "0s",
            "--policy",
            &policy_arg,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("from hub faultline"), "{}", text(&out));
    assert_eq!(target.state(), 'S');
}

#[test]
fn numbers_out_of_range_are_usage_errors_never_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, needle) in [
        ("--memory-mib", "17592186044416", "17592186044416"),
        ("--memory-mib", "0", "0 is not in 1..=4096"),
        ("--call-timeout", "0s", "out of range"),
        ("--duration", "400d", "out of range"),
        ("--execution-id", "../x", "an execution id is"),
    ] {
        let out = faultline(dir.path(), &["inject", "process-pause", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", text(&out));
        assert!(
            text(&out).contains(needle),
            "{flag} {value}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_hub_entry_whose_component_lies_about_its_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A hub that lists the process-pause component as `process-kill`.
    let config = faultline_tests::fixture_hub_of(
        dir.path(),
        &[("process-kill", c::PROCESS_PAUSE, "process")],
    );
    let policy = dir.path().join("all.toml");
    std::fs::write(
        &policy,
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .args(["inject", "process-kill", "--param", "pid=1", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("hub fixtures lists this component as process-kill@")
            && t.contains(", but it describes itself as process-pause@"),
        "{t}"
    );
}

#[test]
fn probe_verdicts_are_exit_codes_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"command\"]\ncommand = { programs = [\"/usr/bin/false\"] }\n",
    )
    .unwrap();
    let run = |mode: &str, json: bool| {
        let mut cmd = faultline(dir.path(), &["probe", c::MISBEHAVE_PROBE, "--param"]);
        cmd.arg(format!("mode={mode}")).arg("--policy").arg(&policy);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    for (mode, code, says) in [
        ("pass", 0, "probe passed in "),
        ("fail", 1, "probe FAILED in "),
        ("error", 6, "probe NOT APPLICABLE (it could not run)"),
        ("denied", 6, "probe NOT APPLICABLE (it could not run)"),
        ("trap", 6, "check trapped"),
    ] {
        let out = run(mode, false);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(code), "{mode}: {said}");
        assert!(said.contains(says), "{mode}: {said}");
    }
    for (mode, code, verdict) in [
        ("pass", 0, "passed"),
        ("fail", 1, "failed"),
        ("denied", 6, "not-applicable"),
    ] {
        let out = run(mode, true);
        assert_eq!(out.status.code(), Some(code), "{mode}: {}", text(&out));
        // stdout is exactly one JSON object.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{mode}: not JSON ({e}): {}", text(&out)));
        assert_eq!(v["verdict"], verdict, "{v}");
        assert_eq!(v["probe"], "fixture-misbehave-probe@0.1.0", "{v}");
        assert!(v["elapsed_ms"].is_number(), "{v}");
        if verdict == "not-applicable" {
            assert_eq!(v["not_run"]["kind"], "denied", "{v}");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("not in the command allow-list"),
                "{v}"
            );
        } else {
            assert_eq!(v["value"], 1.0, "{v}");
            assert!(v.get("not_run").is_none(), "{v}");
        }
    }
}
