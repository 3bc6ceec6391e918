//! The `command` capability through `command-probe` and a misbehaving probe, on real programs:
//! verdicts (passed, failed, not applicable), the allow-list and its denials, no shell, an empty
//! environment, output caps, timeouts that kill a whole process group (a program that ignores
//! SIGTERM, one whose child holds stdout open), bounds on arguments, unsafe program files.

use faultline::host::{Checked, Host, Verdict};
use faultline::policy::Policy;
use faultline_tests::{components as c, host, host_with, wasm};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every component may run these programs (TOML array items).
fn allow(programs: &str) -> Policy {
    Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"command\"]\ncommand = {{ programs = [{programs}] }}\n"
    ))
    .unwrap()
}

/// Loads `component` under `policy` and judges one check of `params`.
async fn judge_with(
    host: &Host,
    component: &str,
    policy: &Policy,
    params: serde_json::Value,
) -> Checked {
    let probe = faultline_tests::load_probe(host, &wasm(component), policy)
        .await
        .unwrap();
    let params = params.to_string();
    probe.validate(host, &params).await.unwrap();
    probe.judge(host, "ex-command", &params).await
}

/// One `command-probe` check (the host's compile cache makes every load after the first cheap).
async fn judge(host: &Host, policy: &Policy, params: serde_json::Value) -> Checked {
    judge_with(host, c::COMMAND_PROBE, policy, params).await
}

/// Pids of live processes whose command line contains `marker`.
fn alive(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let state = faultline_tests::proc_state(pid);
        if state != 'Z' && String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to 2 s for no process to carry `marker`.
fn gone(marker: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if alive(marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Writes an executable script (mode 0755) into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn assert_not_applicable(c: &Checked, kind: &str, says: &str) {
    assert_eq!(c.verdict, Verdict::NotApplicable, "{c:?}");
    let not_run = c.not_run.as_ref().unwrap();
    assert_eq!(not_run.kind, kind, "{c:?}");
    assert!(c.message.contains(says), "{:?} lacks {says:?}", c.message);
}

#[tokio::test]
async fn exit_codes_and_stdout_decide_passed_or_failed() {
    let (host, _d) = host();
    let policy = allow(r#""/bin/true", "/bin/false", "/usr/bin/echo""#);
    let c = judge(&host, &policy, json!({"program": "/bin/true"})).await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    assert!(c.message.contains("/bin/true exited 0"), "{}", c.message);
    eprintln!(
        "command: /bin/true from spawn to exit {:.2} ms, whole check {:.2} ms (debug build)",
        c.value.unwrap(),
        c.elapsed_ms
    );
    let c = judge(&host, &policy, json!({"program": "/bin/false"})).await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(
        c.message.contains("exit code 1, expected 0"),
        "{}",
        c.message
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": "/bin/false", "exit_codes": [1, 2]}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    let echo = |extra: serde_json::Value| {
        let mut p = json!({"program": "/usr/bin/echo", "args": ["accepting connections", "v=16"]});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let c = judge(
        &host,
        &policy,
        echo(json!({"stdout_contains": "accepting", "stdout_regex": r"(?m)v=\d+$"})),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    let c = judge(
        &host,
        &policy,
        echo(json!({"stdout_contains": "no response"})),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(
        c.message.contains(
            r#"stdout does not contain "no response"; stdout: accepting connections v=16"#
        ),
        "{}",
        c.message
    );
    let c = judge(&host, &policy, echo(json!({"stdout_regex": "^v="}))).await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(c.value.is_some_and(|ms| ms > 0.0 && ms < 1000.0), "{c:?}");
}

#[tokio::test]
async fn no_shell_no_environment_no_stdin_and_cwd_is_root() {
    let (host, _d) = host();
    let policy = allow(r#""/usr/bin/echo", "/usr/bin/env", "/usr/bin/pwd", "/usr/bin/cat""#);
    // Arguments go to the program as they are: nothing expands `$(…)`, `;`, `*` or `$HOME`.
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["$(id)", "a;b", "*", "$HOME"],
               "stdout_regex": r"^\$\(id\) a;b \* \$HOME\n$"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/env", "stdout_regex": "^PATH=/usr/bin:/bin\n$"}),
    )
    .await;
    assert_eq!(
        c.verdict,
        Verdict::Passed,
        "the environment is PATH only: {c:?}"
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/pwd", "stdout_regex": "^/\n$"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    // stdin is /dev/null: `cat` ends at once with nothing to say.
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/cat", "stdout_regex": r"^\z", "timeout": "1s"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    // A shell is a program like any other: not allowed unless listed.
    let c = judge(
        &host,
        &policy,
        json!({"program": "/bin/sh", "args": ["-c", "echo pwned"]}),
    )
    .await;
    assert_not_applicable(
        &c,
        "denied",
        "program \"/bin/sh\" is not in the command allow-list",
    );
}

#[tokio::test]
async fn the_allow_list_is_exact_and_denials_name_the_rule() {
    let (host, _d) = host();
    let policy = allow(r#""/usr/bin/true", { path = "/usr/bin/echo", args = ["hello", "w*"] }"#);
    let c = judge(&host, &policy, json!({"program": "/usr/bin/id"})).await;
    assert_not_applicable(
        &c,
        "denied",
        "(grant 1 (*); allowed programs: /usr/bin/true, /usr/bin/echo)",
    );
    // Same file, another spelling: the guest must name the path exactly as listed.
    let c = judge(&host, &policy, json!({"program": "/usr/bin/../bin/true"})).await;
    assert_not_applicable(&c, "denied", "not in the command allow-list");
    let c = judge(&host, &policy, json!({"program": "/bin/true"})).await;
    assert_not_applicable(&c, "denied", "not in the command allow-list");
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["hello", "world"], "stdout_contains": "hello world"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["hello", "there"]}),
    )
    .await;
    assert_not_applicable(
        &c,
        "denied",
        r#"grant 1 (*): argument 1 "there" does not match "w*""#,
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["hello"]}),
    )
    .await;
    assert_not_applicable(&c, "denied", "takes exactly 2 argument(s) here, 1 given");
    // Not granted `command` at all: a probe that imports it is refused at load.
    let e = faultline_tests::load_probe(&host, &wasm(c::COMMAND_PROBE), &Policy::default())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("command"), "{e}");
}

#[tokio::test]
async fn hostile_arguments_are_refused_before_anything_runs() {
    let (host, _d) = host();
    let policy = allow(r#""/usr/bin/echo""#);
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["ok", "a\u{0}b"]}),
    )
    .await;
    assert_not_applicable(&c, "invalid", r#"argument 1 "a\0b" contains a NUL byte"#);
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": vec!["x"; 300]}),
    )
    .await;
    assert_not_applicable(&c, "invalid", "300 arguments given, at most 256");
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": ["y".repeat(5000)]}),
    )
    .await;
    assert_not_applicable(&c, "invalid", "argument 0 is 5000 bytes, at most 4096");
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/echo", "args": vec!["z".repeat(4000); 10]}),
    )
    .await;
    assert_not_applicable(
        &c,
        "invalid",
        "the arguments hold 40000 bytes, at most 32768",
    );
    // A huge program name is denied, and the message does not repeat it whole.
    let long = format!("/usr/bin/{}", "p".repeat(100_000));
    let c = judge(&host, &policy, json!({"program": long})).await;
    assert_not_applicable(&c, "denied", "(100009 bytes)");
    assert!(
        c.message.len() < 1000,
        "{} bytes of message",
        c.message.len()
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group_even_a_program_that_ignores_sigterm() {
    let (host, _d) = host();
    let dir = tempfile::tempdir().unwrap();
    let stubborn = script(
        dir.path(),
        "stubborn",
        "trap '' TERM\nsleep 30.4711 &\nsleep 30.4712\necho never",
    );
    let policy = allow(&format!(r#""/usr/bin/sleep", "{stubborn}""#));
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/sleep", "args": ["30.4713"], "timeout": "300ms"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(c.message.contains("timed out after 300ms"), "{}", c.message);
    assert!(gone("30.4713"), "sleep outlived its timeout");
    let c = judge(
        &host,
        &policy,
        json!({"program": stubborn, "timeout": "300ms"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(c.message.contains("timed out"), "{}", c.message);
    assert!(
        gone("30.471"),
        "the script or its children outlived the timeout"
    );
    let ran = c.value.unwrap();
    eprintln!("command: a SIGTERM-ignoring script killed after {ran:.1} ms (timeout 300 ms)");
    assert!((300.0..800.0).contains(&ran), "ran {ran} ms");
}

#[tokio::test]
async fn a_child_holding_stdout_open_does_not_hold_the_call() {
    let (host, _d) = host();
    let dir = tempfile::tempdir().unwrap();
    // Its child keeps stdout open for 30 s after the script exits.
    let forks = script(dir.path(), "forks", "sleep 30.5811 &\necho started");
    // This one leaves the process group (setsid): the group kill cannot reach it.
    let escapes = script(
        dir.path(),
        "escapes",
        // (The pause lets `setsid` happen before the script exits and its group is killed.)
        "setsid sleep 30.5812 &\nsleep 0.2\necho started",
    );
    let policy = allow(&format!(r#""{forks}", "{escapes}""#));
    let c = judge(
        &host,
        &policy,
        json!({"program": forks, "stdout_contains": "started", "timeout": "1s"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    assert!(c.value.unwrap() < 500.0, "{c:?}");
    assert!(
        gone("30.5811"),
        "the background child outlived its parent's run"
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": escapes, "stdout_contains": "started", "timeout": "1s"}),
    )
    .await;
    let escaped = alive("30.5812");
    assert!(
        !escaped.is_empty(),
        "nothing escaped the group: the test proves nothing"
    );
    for pid in escaped {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    let ran = c.value.unwrap();
    eprintln!(
        "command: output of a program whose escaped child holds stdout, read for {ran:.1} ms"
    );
    // 200 ms of the script's own, then at most the 200 ms drain grace.
    assert!(
        (200.0..700.0).contains(&ran),
        "waited {ran} ms for an escaped child"
    );
    assert!(gone("30.5812"));
}

#[tokio::test]
async fn output_is_capped_at_64_kib_and_a_flood_is_cut_by_the_timeout() {
    let (host, _d) = host();
    let policy = allow(r#""/usr/bin/seq", "/usr/bin/yes""#);
    // 588 895 bytes of output; the first 64 KiB are kept.
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/seq", "args": ["1", "100000"], "stdout_regex": r"^1\n2\n3\n"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
    assert!(
        c.message.contains("(output cut at 64 KiB)"),
        "{}",
        c.message
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/seq", "args": ["1", "100000"], "stdout_contains": "99999"}),
    )
    .await;
    assert_eq!(
        c.verdict,
        Verdict::Failed,
        "past the cap is not seen: {c:?}"
    );
    let c = judge(
        &host,
        &policy,
        json!({"program": "/usr/bin/yes", "args": ["flood"], "timeout": "300ms"}),
    )
    .await;
    assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
    assert!(c.message.contains("timed out"), "{}", c.message);
    assert!(gone("flood"));
}

#[tokio::test]
async fn the_call_deadline_bounds_the_timeout() {
    // The host's call deadline is 1.5 s; the probe asks for 10 minutes.
    let (host, _d) = host_with(|c| c.call_timeout = Duration::from_millis(1500));
    let policy = allow(r#""/usr/bin/sleep""#);
    let c = judge_with(
        &host,
        c::COMMAND_PROBE,
        &policy,
        json!({"program": "/usr/bin/sleep", "args": ["30.6911"], "timeout": "10m"}),
    )
    .await;
    assert_eq!(
        c.verdict,
        Verdict::Failed,
        "the program timed out, the probe did not: {c:?}"
    );
    assert!(c.message.contains("timed out"), "{}", c.message);
    let ran = c.value.unwrap();
    assert!((1000.0..1500.0).contains(&ran), "ran {ran} ms");
    assert!(gone("30.6911"));
}

#[tokio::test]
async fn unsafe_or_missing_program_files_are_refused_with_the_reason() {
    let (host, _d) = host();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = script(d, "plain", "true");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let writable = script(d, "writable", "true");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o757)).unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink("/usr/bin/true", &link).unwrap();
    let open = d.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let inside = script(&open, "inside", "true");
    // A safe program reached through a symlink that a directory open to others holds: whoever
    // can write `open` can point `via` elsewhere between the check and the exec.
    std::os::unix::fs::symlink("/usr/bin", open.join("via")).unwrap();
    let via = open.join("via/true").display().to_string();
    let missing = d.join("missing").display().to_string();
    let link = link.display().to_string();
    let policy = allow(&format!(
        r#""{plain}", "{writable}", "{link}", "{inside}", "{via}", "{missing}", "/bin/sh""#
    ));
    let cases = [
        (plain, "denied", "is not executable (mode 0644)"),
        (writable, "denied", "is writable by other users (mode 0757)"),
        (
            link.clone(),
            "denied",
            "is a symlink (to /usr/bin/true): the allow-list must name the file itself",
        ),
        (inside, "denied", "is writable by other users (mode 0777)"),
        (via, "denied", "is writable by other users (mode 0777)"),
        (missing, "unsupported", "does not exist on this host"),
        // `/bin/sh` is a symlink on Debian: the allow-list names `/usr/bin/dash` instead.
        ("/bin/sh".to_string(), "denied", "is a symlink"),
    ];
    for (program, kind, says) in cases {
        let c = judge(&host, &policy, json!({"program": program})).await;
        assert_not_applicable(&c, kind, says);
    }
}

#[tokio::test]
async fn every_way_a_check_can_end_maps_to_its_verdict() {
    let (host, _d) = host_with(|c| {
        c.call_timeout = Duration::from_millis(500);
        c.memory_limit = 16 << 20;
    });
    // `command` granted, but not the program the fixture tries.
    let policy = allow(r#""/usr/bin/false""#);
    let cases = [
        ("pass", Verdict::Passed, None),
        ("fail", Verdict::Failed, None),
        ("error", Verdict::NotApplicable, Some("failed")),
        ("denied", Verdict::NotApplicable, Some("denied")),
        ("trap", Verdict::NotApplicable, Some("trapped")),
        ("loop", Verdict::NotApplicable, Some("deadline")),
        ("bomb", Verdict::NotApplicable, Some("memory-limit")),
    ];
    for (mode, verdict, kind) in cases {
        let c = judge_with(&host, c::MISBEHAVE_PROBE, &policy, json!({ "mode": mode })).await;
        assert_eq!(c.verdict, verdict, "{mode}: {c:?}");
        assert_eq!(c.not_run.as_ref().map(|n| n.kind), kind, "{mode}: {c:?}");
    }
}
