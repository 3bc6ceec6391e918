//! The component host: checks, limits and rollback, against real components and real processes.

use faultline::host::{CallError, LoadError};
use faultline::policy::Policy;
use faultline_tests::{Sleeper, components as c, host, policy_for_pids, wasm};
use std::time::{Duration, Instant};

fn refusal(r: Result<faultline::host::FaultPlugin, LoadError>) -> String {
    match r {
        Err(LoadError::Refused(e)) => e.to_string(),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(p) => panic!("expected a refusal, {} loaded", p.label()),
    }
}

#[tokio::test]
async fn a_fault_without_revert_is_refused_by_name() {
    let (host, _d) = host();
    let msg =
        refusal(faultline_tests::load_fault(&host, &wasm(c::NO_REVERT), &Policy::default()).await);
    assert_eq!(msg, "component does not export 'revert'");
}

#[tokio::test]
async fn an_import_outside_the_contract_is_refused_by_name() {
    let (host, _d) = host();
    let msg = refusal(
        faultline_tests::load_fault(&host, &wasm(c::OUTSIDE_CONTRACT), &Policy::default()).await,
    );
    // `wasi:sockets` is the `outbound` capability, which only probes may use.
    assert!(
        msg.starts_with("a fault may not import 'wasi:sockets/"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_ungranted_interface_is_refused_at_load() {
    let (host, _d) = host();
    let msg = refusal(
        faultline_tests::load_fault(&host, &wasm(c::PROCESS_PAUSE), &Policy::default()).await,
    );
    assert!(
        msg.starts_with(&format!(
            "component imports 'faultline:contract/process@0.1.1', which the policy does not grant to {}",
            faultline_tests::components::release("process-pause")
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn garbage_is_refused_not_a_panic() {
    let (host, _d) = host();
    let msg =
        refusal(faultline_tests::load_fault(&host, b"\0asm not really", &Policy::default()).await);
    assert!(msg.starts_with("not a valid Wasm component"), "{msg}");
}

#[tokio::test]
async fn process_pause_stops_and_resumes_a_real_process() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::PROCESS_PAUSE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    let params = format!(r#"{{"pid": {}}}"#, target.pid());
    plugin.validate(&host, &params).await.unwrap();
    let injected = plugin
        .inject(&host, "ex-pause", &params, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(injected.changes.len(), 1);
    assert_eq!(target.state(), 'T');
    let reverted = plugin
        .revert(&host, "ex-pause", Some(&injected.state))
        .await;
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert_eq!(reverted.guest_error, None);
    assert_eq!(target.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
}

/// Two runs pausing one process: the first to revert leaves it stopped for the other, and only
/// the last revert continues it.
#[tokio::test]
async fn overlapping_pauses_of_one_process_continue_it_only_when_the_last_reverts() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::PROCESS_PAUSE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    let params = format!(r#"{{"pid": {}}}"#, target.pid());
    let d = Duration::from_secs(5);
    let first = plugin.inject(&host, "ex-first", &params, d).await.unwrap();
    let second = plugin.inject(&host, "ex-second", &params, d).await.unwrap();
    assert_eq!(target.state(), 'T');

    let reverted = plugin.revert(&host, "ex-first", Some(&first.state)).await;
    assert!(reverted.is_clean(), "{:?}", reverted.failures);
    // Still held by the second run: neither the guest's undo nor the journal's continued it.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        target.state(),
        'T',
        "the first revert continued a process still held"
    );

    let reverted = plugin.revert(&host, "ex-second", Some(&second.state)).await;
    assert!(reverted.is_clean(), "{:?}", reverted.failures);
    assert_eq!(target.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
}

#[tokio::test]
async fn bad_parameters_are_refused_before_inject() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::PROCESS_PAUSE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    let e = plugin.validate(&host, r#"{"pid": "x"}"#).await.unwrap_err();
    assert!(e.to_string().contains("invalid"), "{e}");
    let e = plugin
        .validate(&host, r#"{"pid": 1, "name": "x"}"#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exactly one of"), "{e}");
    assert_eq!(target.state(), 'S');
}

async fn misbehave(
    target: &Sleeper,
    inject: &str,
    revert: &str,
) -> (
    Result<faultline::host::Injected, CallError>,
    faultline::host::Host,
    tempfile::TempDir,
    faultline::host::FaultPlugin,
) {
    let (host, d) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::MISBEHAVE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    let params = format!(
        r#"{{"pid": {}, "inject": "{inject}", "revert": "{revert}"}}"#,
        target.pid()
    );
    let r = plugin
        .inject(&host, "ex-mis", &params, Duration::from_secs(1))
        .await;
    (r, host, d, plugin)
}

#[tokio::test]
async fn a_trap_in_inject_leads_to_revert_and_the_process_runs_again() {
    let target = Sleeper::start();
    let (r, host, _d, plugin) = misbehave(&target, "trap", "ok").await;
    match r {
        Err(CallError::Trap {
            phase: "inject",
            message,
        }) => {
            assert!(message.contains("deliberate panic"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(target.state(), 'T', "the stop before the trap took effect");
    let reverted = plugin.revert(&host, "ex-mis", None).await;
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert_eq!(target.state(), 'S');
}

#[tokio::test]
async fn an_endless_loop_is_cut_off_at_its_deadline_and_the_host_stays_healthy() {
    let target = Sleeper::start();
    let start = Instant::now();
    let (r, host, _d, plugin) = misbehave(&target, "loop", "ok").await;
    let took = start.elapsed();
    match r {
        Err(CallError::Deadline {
            phase: "inject",
            limit,
        }) => {
            assert_eq!(limit, Duration::from_millis(1500))
        }
        other => panic!("expected a deadline, got {other:?}"),
    }
    assert!(took < Duration::from_secs(10), "cut off after {took:?}");
    let reverted = plugin.revert(&host, "ex-mis", None).await;
    assert!(reverted.failures.is_empty());
    assert_eq!(target.state(), 'S');
    // The same host still runs a well-behaved call.
    let ok = plugin
        .inject(
            &host,
            "ex-ok",
            r#"{"inject": "ok"}"#,
            Duration::from_secs(1),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn a_memory_bomb_hits_its_cap() {
    let target = Sleeper::start();
    let (r, host, _d, plugin) = misbehave(&target, "bomb", "ok").await;
    match r {
        Err(CallError::MemoryLimit {
            phase: "inject",
            limit,
            asked,
        }) => {
            assert_eq!(limit, 32 << 20);
            assert!(asked > limit);
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    let reverted = plugin.revert(&host, "ex-mis", None).await;
    assert!(reverted.failures.is_empty());
    assert_eq!(target.state(), 'S');
}

#[tokio::test]
async fn a_revert_that_lies_traps_or_hangs_still_leaves_the_host_clean() {
    for mode in ["noop", "trap", "loop", "fail"] {
        let target = Sleeper::start();
        let (r, host, _d, plugin) = misbehave(&target, "ok", mode).await;
        let injected = r.unwrap();
        assert_eq!(target.state(), 'T');
        let reverted = plugin.revert(&host, "ex-mis", Some(&injected.state)).await;
        assert!(
            reverted.failures.is_empty(),
            "{mode}: {:?}",
            reverted.failures
        );
        if mode != "noop" {
            assert!(
                reverted.guest_error.is_some(),
                "{mode}: guest error expected"
            );
        }
        assert_eq!(
            target.state(),
            'S',
            "{mode}: the journal resumed the process"
        );
    }
}

#[tokio::test]
async fn out_of_scope_processes_are_denied_naming_the_rule() {
    let target = Sleeper::start();
    let other = Sleeper::start();
    let own = std::process::id();
    let (host, _d) = host();
    let policy = policy_for_pids(&[target.pid(), 1, own]);
    let plugin = faultline_tests::load_fault(&host, &wasm(c::PROCESS_PAUSE), &policy)
        .await
        .unwrap();
    for (pid, expected) in [
        (
            other.pid(),
            format!(
                "is outside the scope granted to {} (grant 1 (*))",
                faultline_tests::components::release("process-pause")
            ),
        ),
        (1, "pid 1 is never in scope".to_string()),
        (
            own,
            "is the agent or one of its ancestors, never in scope".to_string(),
        ),
    ] {
        let params = format!(r#"{{"pid": {pid}}}"#);
        let e = plugin
            .inject(&host, "ex-deny", &params, Duration::from_secs(1))
            .await
            .unwrap_err();
        // `find` leaves out-of-scope processes out; so does the pause, which then finds none.
        let text = e.to_string();
        assert!(
            text.contains(&expected) || text.contains("no process in scope"),
            "pid {pid}: {text}"
        );
    }
    assert_eq!(other.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
}

#[tokio::test]
async fn probe_process_sees_a_paused_process() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let policy = policy_for_pids(&[target.pid()]);
    let probe = faultline_tests::load_probe(&host, &wasm(c::PROBE_PROCESS), &policy)
        .await
        .unwrap();
    let params = format!(r#"{{"pid": {}}}"#, target.pid());
    let o = probe.check(&host, "ex-probe", &params).await.unwrap();
    assert!(o.ok, "{}", o.message);
    assert_eq!(o.value, Some(1.0));
    let fault = faultline_tests::load_fault(&host, &wasm(c::PROCESS_PAUSE), &policy)
        .await
        .unwrap();
    let injected = fault
        .inject(&host, "ex-probe", &params, Duration::from_secs(1))
        .await
        .unwrap();
    let o = probe.check(&host, "ex-probe", &params).await.unwrap();
    assert!(
        !o.ok,
        "a stopped process must fail the probe: {}",
        o.message
    );
    fault.revert(&host, "ex-probe", Some(&injected.state)).await;
    assert_eq!(target.state(), 'S');
}

fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[tokio::test]
async fn a_local_file_calling_itself_process_pause_gets_no_name_grant_but_its_digest_counts() {
    let (host, _d) = host();
    // The published process-pause bytes, handed over as a local file: it describes itself as
    // `process-pause`, which is exactly what a forged component would say.
    let bytes = wasm(c::PROCESS_PAUSE);
    let local = faultline::policy::Identity::local(&digest_of(&bytes));
    let by_name = Policy::parse(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = { pids = [4194303] }\n",
    )
    .unwrap();
    let msg = refusal(host.load_fault(&bytes, &local, &by_name).await);
    assert!(
        msg.contains("which the policy does not grant to local file sha256:")
            && msg.contains("no grant in the policy matches"),
        "{msg}"
    );
    // The same bytes resolved through the verified bundled hub carry its name: granted.
    let published = faultline_tests::identity(&bytes);
    assert!(
        published.origin.is_some(),
        "the bundled hub lists these bytes"
    );
    host.load_fault(&bytes, &published, &by_name).await.unwrap();
    // A digest grant covers the local file.
    let by_digest = Policy::parse(&format!(
        "[[grant]]\ncomponent = \"{}\"\ncapabilities = [\"process\"]\n",
        digest_of(&bytes)
    ))
    .unwrap();
    let plugin = host.load_fault(&bytes, &local, &by_digest).await.unwrap();
    assert!(plugin.grants.allows(faultline::policy::Capability::Process));
}

#[tokio::test]
async fn a_hub_entry_whose_component_lies_about_its_name_is_refused_naming_both() {
    let (host, _d) = host();
    let bytes = wasm(c::PROCESS_PAUSE);
    let listed_as_kill = faultline::policy::Identity::from_hub(
        "faultline",
        "process-kill",
        semver::Version::new(0, 1, 0),
        &digest_of(&bytes),
    );
    let grant_all =
        Policy::parse("[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\n").unwrap();
    let msg = refusal(host.load_fault(&bytes, &listed_as_kill, &grant_all).await);
    assert_eq!(
        msg,
        format!(
            "hub faultline lists this component as process-kill@0.1.0, but it describes itself as {}: refused",
            faultline_tests::components::release("process-pause")
        )
    );
    let wrong_version = faultline::policy::Identity::from_hub(
        "faultline",
        "process-pause",
        semver::Version::new(0, 2, 0),
        &digest_of(&bytes),
    );
    let msg = refusal(host.load_fault(&bytes, &wrong_version, &grant_all).await);
    assert!(
        msg.contains(&format!(
            "as process-pause@0.2.0, but it describes itself as {}",
            faultline_tests::components::release("process-pause")
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn a_probe_cannot_be_loaded_as_a_fault() {
    let (host, _d) = host();
    let msg = refusal(
        faultline_tests::load_fault(&host, &wasm(c::PROBE_PROCESS), &Policy::default()).await,
    );
    assert_eq!(
        msg,
        format!(
            "{} is a probe, not a fault",
            faultline_tests::components::release("probe-process")
        )
    );
}

#[tokio::test]
async fn parsed_imports_are_the_compiled_components_imports() {
    let (host, _d) = host();
    let mut paths: Vec<&str> = c::PUBLISHED.iter().map(|(_, p)| *p).collect();
    paths.extend([c::MISBEHAVE, c::NO_REVERT, c::OUTSIDE_CONTRACT]);
    for path in paths {
        let bytes = wasm(path);
        let (component, _, _) = host.compile(&bytes).await.unwrap();
        let compiled = faultline::host::check::shape(host.engine(), &component).imports;
        let parsed = faultline::host::check::import_names(&bytes).unwrap();
        assert_eq!(parsed, compiled, "{path}");
        assert!(!parsed.is_empty(), "{path}");
    }
    assert!(faultline::host::check::import_names(b"\0asm\x01\0\0\0").is_err());
}
