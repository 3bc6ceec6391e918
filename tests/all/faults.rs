//! The published faults through the real host, against real namespaces and cgroups: each is
//! loaded under a policy granting a throwaway target, injected, measured, reverted, and the
//! target is then exactly as before (qdiscs, nftables and iptables-legacy rules, cgroup files).
//! The same components are denied what the policy does not grant, naming the rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use faultline::host::{CallError, FaultPlugin, Host, Injected};
use faultline::policy::Policy;
use faultline_tests::cgroups::{TestCgroup, cpu_ns, read};
use faultline_tests::dns::{ANSWER, DnsServer, assert_resolves, bound_queues, dig};
use faultline_tests::netns::{
    A_ADDR, A_IF, B_ADDR, NetPair, assert_near, binomial_5sigma, connect_from_a, echo, median,
    rtts, tcp_listener, udp_delivery,
};
use faultline_tests::{components as c, host, host_with, proc_state, wasm};

/// A policy of one grant to every component.
fn policy(grant: &str) -> Policy {
    Policy::parse(&format!("[[grant]]\ncomponent = \"*\"\n{grant}\n")).unwrap()
}

/// Network faults in the throwaway namespaces, on `v0` only.
fn network_policy() -> Policy {
    policy(&format!(
        "capabilities = [\"network\"]\nnetwork = {{ namespaces = [\"named:flt-*\"], interfaces = [\"{A_IF}\"] }}"
    ))
}

/// Cgroup changes below `subtree` only.
fn cgroup_policy(subtree: &str) -> Policy {
    policy(&format!(
        "capabilities = [\"cgroup\", \"process\"]\ncgroup = {{ subtrees = [\"{subtree}\"] }}\nprocess = {{ stress = [\"cpu\", \"memory\"] }}"
    ))
}

/// Parameters naming egress from `a` to `b` on `v0`, plus `extra` (JSON members).
fn towards_b(pair: &NetPair, extra: &str) -> String {
    format!(
        r#"{{"netns": "{}", "interfaces": ["{A_IF}"], "destinations": ["{B_ADDR}/32"], {extra}}}"#,
        pair.a
    )
}

/// Loads `component`, validates and injects `params`.
async fn inject(
    host: &Host,
    component: &str,
    policy: &Policy,
    params: &str,
) -> (FaultPlugin, Injected) {
    let plugin = faultline_tests::load_fault(host, &wasm(component), policy)
        .await
        .unwrap();
    plugin.validate(host, params).await.unwrap();
    let injected = plugin
        .inject(host, "ex-faults", params, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(injected.changes.len(), 1, "one host change per injection");
    (plugin, injected)
}

/// Reverts through the fault's own `revert` and checks neither it nor the journal left anything.
async fn revert(host: &Host, plugin: &FaultPlugin, injected: &Injected) {
    let reverted = plugin
        .revert(host, "ex-faults", Some(&injected.state))
        .await;
    assert_eq!(reverted.guest_error, None, "the fault's revert failed");
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert!(host.journal().outstanding(None).is_empty());
}

/// Injects `params` expecting the contract's `denied` error; returns its reason.
async fn denied(host: &Host, component: &str, policy: &Policy, params: &str) -> String {
    let plugin = faultline_tests::load_fault(host, &wasm(component), policy)
        .await
        .unwrap();
    plugin.validate(host, params).await.unwrap();
    let r = plugin
        .inject(host, "ex-denied", params, Duration::from_secs(5))
        .await;
    let reverted = plugin.revert(host, "ex-denied", None).await;
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert!(host.journal().outstanding(None).is_empty());
    match r {
        Err(CallError::Guest {
            phase: "inject",
            error,
        }) if error.kind == "denied" => error.reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn network_loss_drops_its_share_and_reverts_cleanly() {
    if !faultline_tests::privileged("network_loss_drops_its_share_and_reverts_cleanly") {
        return;
    }
    let pair = NetPair::new("floss");
    let before = pair.snapshot();
    let (host, _d) = host();
    let params = towards_b(
        &pair,
        r#""ports": ["7500"], "protocol": "udp", "percent": 30"#,
    );
    let (plugin, injected) = inject(&host, c::NETWORK_LOSS, &network_policy(), &params).await;
    let (got, _) = udp_delivery(&pair, 7500, 1000);
    let (other, _) = udp_delivery(&pair, 7501, 200);
    revert(&host, &plugin, &injected).await;
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    assert_near(
        "network-loss: delivered ratio",
        f64::from(got) / 1000.0,
        0.70,
        binomial_5sigma(0.70, 1000),
    );
    assert_eq!(other, 200, "another port lost packets");
    assert_eq!(udp_delivery(&pair, 7500, 200).0, 200, "loss after revert");
}

#[tokio::test]
async fn network_delay_adds_its_latency_and_reverts_cleanly() {
    if !faultline_tests::privileged("network_delay_adds_its_latency_and_reverts_cleanly") {
        return;
    }
    let pair = NetPair::new("fdelay");
    let server = pair.within(&pair.b, || UdpSocket::bind(("0.0.0.0", 7600)).unwrap());
    let stop = echo(server);
    let client = pair.within(&pair.a, || UdpSocket::bind((A_ADDR, 0)).unwrap());
    client.connect((B_ADDR, 7600)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let baseline = median(rtts(&client, 20));
    let before = pair.snapshot();
    let (host, _d) = host();
    let params = towards_b(
        &pair,
        r#""ports": ["7600"], "protocol": "udp", "delay_ms": 100"#,
    );
    let (plugin, injected) = inject(&host, c::NETWORK_DELAY, &network_policy(), &params).await;
    let delayed = rtts(&client, 20);
    revert(&host, &plugin, &injected).await;
    let after = median(rtts(&client, 10));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    let added = median(delayed.clone()) - baseline;
    eprintln!("network-delay: baseline {baseline:.3} ms, added median {added:.3} ms (target 100)");
    assert!(
        (added - 100.0).abs() <= 10.0,
        "added {added} ms: {delayed:?}"
    );
    assert!(after < baseline + 10.0, "after revert {after} ms");
}

#[tokio::test]
async fn network_blackhole_reject_refuses_connections_and_reverts_cleanly() {
    if !faultline_tests::privileged(
        "network_blackhole_reject_refuses_connections_and_reverts_cleanly",
    ) {
        return;
    }
    let pair = NetPair::new("freject");
    let _listener = tcp_listener(&pair, 8095);
    let before = pair.snapshot();
    let (host, _d) = host();
    let params = towards_b(
        &pair,
        r#""ports": ["8095"], "protocol": "tcp", "mode": "reject""#,
    );
    let (plugin, injected) = inject(&host, c::NETWORK_BLACKHOLE, &network_policy(), &params).await;
    let start = Instant::now();
    let refused = connect_from_a(&pair, 8095, Duration::from_secs(2));
    let took = start.elapsed();
    revert(&host, &plugin, &injected).await;
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    let err = refused.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    eprintln!("network-blackhole reject: refused after {took:?}");
    assert!(
        took < Duration::from_millis(300),
        "refused only after {took:?}"
    );
    connect_from_a(&pair, 8095, Duration::from_secs(2)).unwrap();
}

#[tokio::test]
async fn network_dns_fails_chosen_names_as_asked_and_reverts_cleanly() {
    if !faultline_tests::privileged("network_dns_fails_chosen_names_as_asked_and_reverts_cleanly") {
        return;
    }
    let pair = NetPair::new("fdns");
    let server = DnsServer::start(&pair);
    assert_resolves(&pair, "api.fail.test");
    let before = pair.snapshot();
    let (host, _d) = host();
    for (extra, status) in [
        (
            r#""names": ["*.fail.test"], "failure": "nxdomain""#,
            Some("NXDOMAIN"),
        ),
        (
            r#""names": ["*.fail.test"], "failure": "servfail""#,
            Some("SERVFAIL"),
        ),
        (r#""names": ["*.fail.test"], "failure": "timeout""#, None),
        // With names and no failure: NXDOMAIN.
        (r#""names": ["API.fail.test"]"#, Some("NXDOMAIN")),
    ] {
        let params = towards_b(&pair, extra);
        let (plugin, injected) = inject(&host, c::NETWORK_DNS, &network_policy(), &params).await;
        let failed = dig(&pair, "api.fail.test");
        let reached = server.queries();
        let other = dig(&pair, "api.ok.test");
        let reached_other = server.queries() - reached;
        revert(&host, &plugin, &injected).await;
        assert_eq!(pair.snapshot(), before, "revert left something behind");
        assert_eq!(
            bound_queues(&pair, &pair.a),
            "",
            "the worker is still bound"
        );
        eprintln!(
            "network-dns {extra}: {:?} after {:?}",
            failed.status, failed.elapsed
        );
        assert_eq!(failed.status.as_deref(), status, "{extra}: {failed:?}");
        assert!(failed.addresses.is_empty(), "{failed:?}");
        if status.is_none() {
            assert_eq!(
                failed.exit,
                Some(9),
                "no answer within dig's 1 s: {failed:?}"
            );
        }
        assert_eq!(other.status.as_deref(), Some("NOERROR"), "{other:?}");
        assert_eq!(other.addresses, vec![ANSWER], "{other:?}");
        assert_eq!(reached_other, 1, "the other name did not reach the server");
        assert_resolves(&pair, "api.fail.test");
    }
    // 0.1.0's parameters: every query is rejected at once.
    let params = format!(
        r#"{{"netns": "{}", "interfaces": ["{A_IF}"], "destinations": ["{B_ADDR}/32"]}}"#,
        pair.a
    );
    let (plugin, injected) = inject(&host, c::NETWORK_DNS, &network_policy(), &params).await;
    let refused = dig(&pair, "api.ok.test");
    revert(&host, &plugin, &injected).await;
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    eprintln!(
        "network-dns reject: no answer, dig ended after {:?}",
        refused.elapsed
    );
    assert_eq!(refused.status, None, "{refused:?}");
    assert!(refused.elapsed < Duration::from_millis(900), "{refused:?}");
    assert_resolves(&pair, "api.ok.test");

    // DNS is scoped as port 53: a grant of port 53 covers it, one of port 80 does not.
    let params = towards_b(&pair, r#""names": ["*.fail.test"], "failure": "servfail""#);
    let port = |p: &str| {
        policy(&format!(
            "capabilities = [\"network\"]\nnetwork = {{ namespaces = [\"named:flt-*\"], interfaces = [\"{A_IF}\"], ports = [\"{p}\"] }}"
        ))
    };
    let (plugin, injected) = inject(&host, c::NETWORK_DNS, &port("53"), &params).await;
    assert_eq!(
        dig(&pair, "a.fail.test").status.as_deref(),
        Some("SERVFAIL")
    );
    revert(&host, &plugin, &injected).await;
    let reason = denied(&host, c::NETWORK_DNS, &port("80"), &params).await;
    assert!(reason.contains("ports [(53, 53)]"), "{reason}");
    assert_eq!(pair.snapshot(), before);

    // A name the host refuses: the guest gets `invalid` naming it, nothing is changed.
    let params = towards_b(
        &pair,
        r#""names": ["ok.test", "bad..name"], "failure": "timeout""#,
    );
    let plugin = faultline_tests::load_fault(&host, &wasm(c::NETWORK_DNS), &network_policy())
        .await
        .unwrap();
    plugin.validate(&host, &params).await.unwrap();
    let r = plugin
        .inject(&host, "ex-bad-name", &params, Duration::from_secs(5))
        .await;
    let reverted = plugin.revert(&host, "ex-bad-name", None).await;
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    match r {
        Err(CallError::Guest {
            phase: "inject",
            error,
        }) if error.kind == "invalid" => {
            assert!(
                error.reason.contains(r#"#1 "bad..name""#),
                "{}",
                error.reason
            );
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_eq!(pair.snapshot(), before);
}

#[tokio::test]
async fn network_tcp_reset_resets_open_connections_and_refuses_new_ones() {
    if !faultline_tests::privileged(
        "network_tcp_reset_resets_open_connections_and_refuses_new_ones",
    ) {
        return;
    }
    let pair = NetPair::new("ftrst");
    let listener = tcp_listener(&pair, 8096);
    let accept = || {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match listener.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    };
    // Two connections open before injection: one whose client sends next, one whose server
    // does.
    let mut sender = connect_from_a(&pair, 8096, Duration::from_secs(2)).unwrap();
    let mut sender_peer = accept();
    let mut reader = connect_from_a(&pair, 8096, Duration::from_secs(2)).unwrap();
    let mut reader_peer = accept();
    let mut buf = [0u8; 64];
    for (client, peer) in [
        (&mut sender, &mut sender_peer),
        (&mut reader, &mut reader_peer),
    ] {
        peer.set_nonblocking(false).unwrap();
        client.write_all(b"ping").unwrap();
        assert_eq!(peer.read(&mut buf).unwrap(), 4);
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
    }
    let before = pair.snapshot();
    let (host, _d) = host();
    let params = towards_b(&pair, r#""ports": ["8096"]"#);
    let (plugin, injected) = inject(&host, c::NETWORK_TCP_RESET, &network_policy(), &params).await;

    // The client sends: its segment is answered with a reset.
    let start = Instant::now();
    let sent = sender.write_all(b"after");
    let read = sender.read(&mut buf);
    let sender_took = start.elapsed();
    // The server sends: the client's acknowledgement is answered with a reset. Data that
    // arrived with it may be read first.
    let start = Instant::now();
    reader_peer.write_all(b"data").unwrap();
    let mut reader_result = reader.read(&mut buf);
    if let Ok(n) = reader_result {
        assert!(n > 0, "the connection ended without a reset");
        reader_result = reader.read(&mut buf);
    }
    let reader_took = start.elapsed();
    let start = Instant::now();
    let refused = connect_from_a(&pair, 8096, Duration::from_secs(2));
    let refused_took = start.elapsed();

    revert(&host, &plugin, &injected).await;
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    eprintln!(
        "network-tcp-reset: open connection reset after {sender_took:?} (client sends), \
         {reader_took:?} (server sends); new connect refused after {refused_took:?}"
    );
    assert!(sent.is_ok(), "the send itself is accepted: {sent:?}");
    let err = read.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let err = reader_result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let err = refused.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    for took in [sender_took, reader_took, refused_took] {
        assert!(
            took < Duration::from_millis(300),
            "reset only after {took:?}"
        );
    }
    // After revert a new connection carries data again.
    let mut fresh = connect_from_a(&pair, 8096, Duration::from_secs(2)).unwrap();
    let mut fresh_peer = accept();
    fresh_peer.set_nonblocking(false).unwrap();
    fresh.write_all(b"again").unwrap();
    assert_eq!(fresh_peer.read(&mut buf).unwrap(), 5);
}

#[tokio::test]
async fn cgroup_cpu_sets_the_quota_and_restores_it_byte_for_byte() {
    if !faultline_tests::privileged("cgroup_cpu_sets_the_quota_and_restores_it_byte_for_byte") {
        return;
    }
    let cg = TestCgroup::new(&["cpu"], true);
    let before = cg.limits();
    let (host, _d) = host();
    let params = format!(r#"{{"path": "{}", "millicores": 250}}"#, cg.path());
    let (plugin, injected) = inject(&host, c::CGROUP_CPU, &cgroup_policy(cg.path()), &params).await;
    let during = cg.limits();
    revert(&host, &plugin, &injected).await;
    assert_eq!(cg.limits(), before, "restored byte for byte");
    let file = |name: &str| {
        during
            .iter()
            .find(|(f, _)| f.file_name().is_some_and(|n| n == name))
            .map(|(_, text)| text.trim().to_string())
    };
    // Whichever hierarchy holds the cpu controller (one at a time): a quarter of the period.
    match (
        file("cpu.cfs_quota_us"),
        file("cpu.cfs_period_us"),
        file("cpu.max"),
    ) {
        (Some(quota), Some(period), _) if quota != "-1" => {
            assert_eq!(
                quota.parse::<u64>().unwrap() * 4,
                period.parse::<u64>().unwrap()
            );
        }
        (_, _, Some(max)) => {
            let (quota, period) = max.split_once(' ').unwrap();
            assert_eq!(
                quota.parse::<u64>().unwrap() * 4,
                period.parse::<u64>().unwrap()
            );
        }
        other => panic!("no cpu limit written: {other:?}"),
    }
}

#[tokio::test]
async fn cgroup_freeze_stops_the_tasks_and_thaws_them() {
    if !faultline_tests::privileged("cgroup_freeze_stops_the_tasks_and_thaws_them") {
        return;
    }
    let cg = TestCgroup::new(&["freezer"], true);
    let mut busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(busy.id()).unwrap();
    cg.adopt(busy.id());
    let before = cg.limits();
    let (host, _d) = host();
    let params = format!(r#"{{"path": "{}"}}"#, cg.path());
    let (plugin, injected) =
        inject(&host, c::CGROUP_FREEZE, &cgroup_policy(cg.path()), &params).await;
    let states = [proc_state(busy.id()), proc_state(cg.pid())];
    let c0 = cpu_ns(pid);
    std::thread::sleep(Duration::from_millis(200));
    let ran_frozen = cpu_ns(pid) - c0;
    revert(&host, &plugin, &injected).await;
    let c1 = cpu_ns(pid);
    std::thread::sleep(Duration::from_millis(200));
    let ran_thawed = cpu_ns(pid) - c1;
    let _ = busy.kill();
    let _ = busy.wait();
    assert_eq!(cg.limits(), before, "thawed byte for byte");
    // v1 freezes tasks in the refrigerator (D); v2 parks them in the signal path (S).
    for s in states {
        assert!(s == 'D' || s == 'S', "a task in state {s} while frozen");
    }
    assert_eq!(ran_frozen, 0, "a frozen task ran");
    assert!(ran_thawed > 0, "the thawed task does not run");
}

#[tokio::test]
async fn stress_cpu_runs_workers_in_the_cgroup_until_revert() {
    if !faultline_tests::privileged("stress_cpu_runs_workers_in_the_cgroup_until_revert") {
        return;
    }
    let cg = TestCgroup::new(&["cpu", "pids"], true);
    let before = cg.limits();
    let (host, _d) = host_with(|config| {
        config.worker_exe = env!("CARGO_BIN_EXE_faultline-e2e").into();
    });
    let params = format!(
        r#"{{"workers": 2, "load_percent": 20, "cgroup": "{}"}}"#,
        cg.path()
    );
    let (plugin, injected) = inject(&host, c::STRESS_CPU, &cgroup_policy(cg.path()), &params).await;
    let workers: Vec<u32> = cg.procs().into_iter().filter(|p| *p != cg.pid()).collect();
    let cmdlines: Vec<String> = workers
        .iter()
        .map(|p| read(format!("/proc/{p}/cmdline")).replace('\0', " "))
        .collect();
    revert(&host, &plugin, &injected).await;
    assert_eq!(workers.len(), 2, "workers in the cgroup: {cmdlines:?}");
    for cmdline in &cmdlines {
        assert!(cmdline.contains("stress-worker"), "{cmdline}");
    }
    for pid in &workers {
        assert_eq!(proc_state(*pid), '?', "worker {pid} still in /proc");
    }
    assert_eq!(cg.limits(), before);
}

#[tokio::test]
async fn out_of_scope_targets_are_denied_naming_the_rule() {
    if !faultline_tests::privileged("out_of_scope_targets_are_denied_naming_the_rule") {
        return;
    }
    let pair = NetPair::new("fdeny");
    let cg = TestCgroup::new(&["cpu", "freezer"], true);
    let net_before = pair.snapshot();
    let cg_before = cg.limits();
    let (host, _d) = host();

    // An interface the grant does not list.
    let params = format!(
        r#"{{"netns": "{}", "interfaces": ["lo"], "percent": 50}}"#,
        pair.a
    );
    let reason = denied(&host, c::NETWORK_LOSS, &network_policy(), &params).await;
    assert!(reason.contains(r#"traffic on ["lo"]"#), "{reason}");
    assert!(
        reason.ends_with(&format!(
            "is outside the scope granted to {} (grant 1 (*))",
            faultline_tests::components::release("network-loss")
        )),
        "{reason}"
    );

    // The network namespace of pid 1, even with `pid` namespaces and every interface granted.
    let everything = policy(
        "capabilities = [\"network\", \"process\"]\nprocess = { pids = [1] }\nnetwork = { namespaces = [\"pid\"], interfaces = [\"*\"] }",
    );
    let reason = denied(
        &host,
        c::NETWORK_LOSS,
        &everything,
        r#"{"pid": 1, "interfaces": ["lo"], "percent": 50}"#,
    )
    .await;
    assert_eq!(reason, "pid 1 is never in scope");

    // A cgroup outside the granted subtree, by path and by pid 1.
    let elsewhere = cgroup_policy("/faultline-nowhere");
    let params = format!(r#"{{"path": "{}", "millicores": 100}}"#, cg.path());
    let reason = denied(&host, c::CGROUP_CPU, &elsewhere, &params).await;
    assert!(reason.contains("outside the granted subtrees"), "{reason}");
    let reason = denied(
        &host,
        c::CGROUP_FREEZE,
        &cgroup_policy(cg.path()),
        r#"{"pid": 1}"#,
    )
    .await;
    assert!(reason.contains("cgroup"), "{reason}");

    // Stress workers in a cgroup outside the grant start nothing.
    let params = r#"{"workers": 1, "cgroup": "/faultline-nowhere"}"#;
    let reason = denied(&host, c::STRESS_CPU, &cgroup_policy(cg.path()), params).await;
    assert!(reason.contains("outside the granted subtrees"), "{reason}");
    assert_eq!(cg.procs(), vec![cg.pid()]);

    assert_eq!(pair.snapshot(), net_before);
    assert_eq!(cg.limits(), cg_before);
}

#[tokio::test]
async fn bad_parameters_are_refused_by_validate_with_reasons() {
    let (host, _d) = host();
    let cases: &[(&str, &str, &str)] = &[
        (
            c::NETWORK_DELAY,
            r#"{"netns": "x", "interfaces": ["eth0"], "delay_ms": 10, "jitter_ms": 20}"#,
            "`jitter_ms` (20) must not exceed `delay_ms` (10)",
        ),
        (
            c::NETWORK_LOSS,
            r#"{"netns": "x", "pid": 5, "interfaces": ["eth0"]}"#,
            "give exactly one of `netns`",
        ),
        (
            c::NETWORK_LOSS,
            r#"{"netns": "x", "interfaces": []}"#,
            "`interfaces` must name at least one interface",
        ),
        (
            c::NETWORK_LOSS,
            r#"{"netns": "x", "interfaces": ["eth0"], "percent": 0}"#,
            "`percent` must be more than 0",
        ),
        (
            c::NETWORK_LOSS,
            r#"{"netns": "x", "interfaces": ["eth0"], "ports": ["90-80"]}"#,
            "port \"90-80\" is not a port",
        ),
        (
            c::NETWORK_LOSS,
            r#"{"netns": "x", "interfaces": ["eth0"], "destinations": ["10.0.0.0/33"]}"#,
            "destination \"10.0.0.0/33\"",
        ),
        (
            c::NETWORK_BLACKHOLE,
            r#"{"netns": "x", "interfaces": ["eth0"], "mode": "shred"}"#,
            "/mode: ",
        ),
        (
            c::NETWORK_DNS,
            r#"{"netns": "x", "interfaces": ["eth0"], "ports": ["53"]}"#,
            "do not apply",
        ),
        (
            c::NETWORK_DNS,
            r#"{"netns": "x", "interfaces": ["eth0"], "names": ["db.internal"], "failure": "reject"}"#,
            "for chosen `names` pick `nxdomain`, `servfail` or `timeout`",
        ),
        (
            c::NETWORK_DNS,
            r#"{"netns": "x", "interfaces": ["eth0"], "failure": "refused"}"#,
            "/failure: ",
        ),
        (
            c::NETWORK_TCP_RESET,
            r#"{"netns": "x", "interfaces": ["eth0"]}"#,
            "`ports` must name at least one port",
        ),
        (
            c::NETWORK_TCP_RESET,
            r#"{"netns": "x", "interfaces": ["eth0"], "ports": ["80"], "protocol": "udp"}"#,
            "connections reset are TCP",
        ),
        (
            c::CGROUP_CPU,
            r#"{"path": "/a/../b", "millicores": 100}"#,
            "contain no `..`",
        ),
        (
            c::CGROUP_CPU,
            r#"{"path": "/a", "pid": 3, "millicores": 100}"#,
            "give exactly one of `pid` or `path`",
        ),
        (
            c::CGROUP_MEMORY,
            r#"{"path": "/a", "bytes": 512}"#,
            "`bytes` must be at least 1048576",
        ),
        (
            c::STRESS_CPU,
            r#"{"workers": 65}"#,
            "`workers` must be 1 to 64",
        ),
        (
            c::STRESS_MEMORY,
            r#"{"workers": 1}"#,
            r#""bytes" is a required property"#,
        ),
    ];
    let grant_all = policy("capabilities = [\"network\", \"cgroup\", \"process\"]");
    for (component, params, expected) in cases {
        let plugin = faultline_tests::load_fault(&host, &wasm(component), &grant_all)
            .await
            .unwrap();
        let e = plugin.validate(&host, params).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("invalid"), "{params}: {text}");
        assert!(text.contains(expected), "{params}: {text}");
    }
}
