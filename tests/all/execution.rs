//! The execution lifecycle: every way a run can end reverts it, including a panic or a drop of
//! the task that drives it; events and outcomes say what happened.

use faultline::execution::{EventKind, Execution, Phase, Spec, StopReason};
use faultline::host::{FaultPlugin, Host};
use faultline_tests::components as c;
use faultline_tests::{Sleeper, host, injected, policy_for_pids, wasm};
use std::sync::Arc;
use std::time::Duration;

async fn pause(target: &Sleeper) -> (Arc<Host>, Arc<FaultPlugin>, tempfile::TempDir) {
    let (host, dir) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::PROCESS_PAUSE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    (Arc::new(host), Arc::new(plugin), dir)
}

fn spec(target: &Sleeper, duration: Duration, lease: Option<Duration>) -> Spec {
    Spec {
        id: faultline::execution::new_id(),
        params: format!(r#"{{"pid": {}}}"#, target.pid()),
        duration,
        lease,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_is_still_reverted() {
    let target = Sleeper::start();
    let (host, plugin, _d) = pause(&target).await;
    let execution = Execution::new(
        host.clone(),
        plugin,
        spec(&target, Duration::from_secs(60), None),
    );
    let handle = execution.handle();
    let watched = handle.clone();
    let pid = target.pid();
    let task = tokio::spawn(async move {
        let run = execution.run();
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => unreachable!("held for 60 s"),
            _ = injected(&watched) => {}
        }
        assert_eq!(faultline_tests::proc_state(pid), 'T');
        panic!("the task driving the run panics while the fault is held");
    });
    let panicked = task.await.unwrap_err();
    assert!(panicked.is_panic());
    let outcome = tokio::time::timeout(Duration::from_secs(10), handle.finished())
        .await
        .expect("the guard published an outcome");
    assert_eq!(outcome.reason, StopReason::Abandoned);
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(target.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
    assert_eq!(handle.phase(), Phase::Ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_is_still_reverted() {
    let target = Sleeper::start();
    let (host, plugin, _d) = pause(&target).await;
    let execution = Execution::new(
        host.clone(),
        plugin,
        spec(&target, Duration::from_secs(60), None),
    );
    let handle = execution.handle();
    let task = tokio::spawn(execution.run());
    injected(&handle).await;
    assert_eq!(target.state(), 'T');
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let outcome = tokio::time::timeout(Duration::from_secs(10), handle.finished())
        .await
        .expect("the guard published an outcome");
    assert_eq!(outcome.reason, StopReason::Abandoned);
    assert!(outcome.is_clean(), "{outcome:?}");
    assert_eq!(target.state(), 'S');
    assert!(host.journal().outstanding(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_hold_and_the_events_tell_the_story() {
    let target = Sleeper::start();
    let (_host, plugin, _d) = pause(&target).await;
    let execution = Execution::new(
        _host.clone(),
        plugin,
        spec(&target, Duration::from_secs(60), None),
    );
    let handle = execution.handle();
    let task = tokio::spawn(execution.run());
    injected(&handle).await;
    assert_eq!(target.state(), 'T');
    assert!(handle.stop(StopReason::UserStop));
    assert!(
        !handle.stop(StopReason::EmergencyStop),
        "the first reason wins"
    );
    let outcome = task.await.unwrap();
    assert_eq!(outcome.reason, StopReason::UserStop);
    assert!(outcome.injected && outcome.is_clean(), "{outcome:?}");
    assert_eq!(outcome.changes, 1);
    assert_eq!(target.state(), 'S');
    let events = handle.history();
    let phases: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Phase { phase } => Some(phase),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Injecting,
            Phase::Injected,
            Phase::Reverting,
            Phase::Ended
        ]
    );
    let said: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Host { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        said.iter()
            .any(|m| m.starts_with("injected process-pause@")),
        "{said:?}"
    );
    assert!(said.iter().any(|m| m.contains("host clean")), "{said:?}");
    assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(!handle.heartbeat(), "no lease to renew after the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_heartbeats_lapses_and_reverts() {
    let target = Sleeper::start();
    let (_host, plugin, _d) = pause(&target).await;
    let execution = Execution::new(
        _host.clone(),
        plugin,
        spec(
            &target,
            Duration::from_secs(60),
            Some(Duration::from_secs(1)),
        ),
    );
    let handle = execution.handle();
    let task = tokio::spawn(execution.run());
    injected(&handle).await;
    // Heartbeats hold it past the first lease...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(handle.heartbeat());
    }
    assert_eq!(handle.phase(), Phase::Injected);
    // ...and without them it lapses.
    let outcome = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("lapsed within the lease")
        .unwrap();
    assert_eq!(outcome.reason, StopReason::LeaseLapsed);
    assert!(outcome.is_clean());
    assert_eq!(target.state(), 'S');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inject_is_reverted_and_says_why() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let plugin = faultline_tests::load_fault(
        &host,
        &wasm(c::MISBEHAVE),
        &policy_for_pids(&[target.pid()]),
    )
    .await
    .unwrap();
    let execution = Execution::new(
        Arc::new(host),
        Arc::new(plugin),
        Spec {
            id: faultline::execution::new_id(),
            params: format!(r#"{{"pid": {}, "inject": "trap"}}"#, target.pid()),
            duration: Duration::from_secs(60),
            lease: None,
        },
    );
    let outcome = execution.run().await;
    assert_eq!(outcome.reason, StopReason::InjectFailed);
    assert!(!outcome.injected);
    assert!(
        outcome
            .inject_error
            .as_deref()
            .is_some_and(|e| e.contains("trapped")),
        "{outcome:?}"
    );
    assert!(outcome.is_clean());
    assert_eq!(target.state(), 'S');
}
