//! The Linux network backend against real packets between two throwaway namespaces: each
//! effect is measured, and after undo the namespaces' qdiscs and rules are exactly as before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use faultline::capability::CapError;
use faultline::capability::network::linux::{
    DnsFailure, Effect, Inverse, Namespace, NetworkBackend, Protocol, Traffic,
};
use faultline_tests::dns::{DnsServer, assert_resolves, bound_queues, dig};
use faultline_tests::netns::{
    A_ADDR, A_IF, B_ADDR, NetPair, assert_near, binomial_5sigma, connect_from_a, echo, median,
    rtts, tcp_listener, udp_delivery,
};

/// Egress of `a` towards `b`.
fn towards_b(pair: &NetPair, protocol: Protocol, ports: Vec<(u16, u16)>) -> Traffic {
    Traffic {
        namespace: Namespace::Named(pair.a.clone()),
        interfaces: vec![A_IF.to_string()],
        destinations: vec![format!("{B_ADDR}/32")],
        ports,
        protocol,
    }
}

/// Applies a change, runs `measure`, undoes it, and checks presence and the restored state.
fn with_change<R>(
    pair: &NetPair,
    tag: &str,
    traffic: &Traffic,
    effect: &Effect,
    measure: impl FnOnce() -> R,
) -> R {
    let backend = NetworkBackend::new();
    let before = pair.snapshot();
    let inverse = backend.prepare(tag, traffic, effect).unwrap();
    assert!(!backend.is_present(&inverse).unwrap());
    assert_eq!(pair.snapshot(), before, "prepare changed something");
    backend.apply(tag, traffic, effect, &inverse).unwrap();
    assert!(backend.is_present(&inverse).unwrap());
    let result = measure();
    backend.undo(&inverse).unwrap();
    assert!(!backend.is_present(&inverse).unwrap());
    backend.undo(&inverse).unwrap();
    assert_eq!(pair.snapshot(), before, "undo left something behind");
    result
}

#[test]
fn loss_drops_the_given_share_of_packets() {
    if !faultline_tests::privileged("loss_drops_the_given_share_of_packets") {
        return;
    }
    let pair = NetPair::new("loss");
    let traffic = towards_b(&pair, Protocol::Udp, vec![(7000, 7000)]);
    let (got, _) = with_change(
        &pair,
        "loss1",
        &traffic,
        &Effect::Loss { percent: 30.0 },
        || udp_delivery(&pair, 7000, 1000),
    );
    // Binomial sd is 1.45% here; 5% is over three of them.
    assert_near(
        "loss: delivered ratio",
        f64::from(got) / 1000.0,
        0.70,
        binomial_5sigma(0.3, 1000),
    );
    // Other ports are untouched.
    assert_eq!(udp_delivery(&pair, 7001, 200).0, 200);
}

#[test]
fn corruption_spoils_the_given_share_of_packets() {
    if !faultline_tests::privileged("corruption_spoils_the_given_share_of_packets") {
        return;
    }
    let pair = NetPair::new("corrupt");
    let traffic = towards_b(&pair, Protocol::Udp, vec![]);
    // A corrupted datagram fails its checksum at the receiver, so it shows up as missing.
    let (got, _) = with_change(
        &pair,
        "corrupt1",
        &traffic,
        &Effect::Corruption { percent: 40.0 },
        || udp_delivery(&pair, 7100, 1000),
    );
    assert_near(
        "corruption: delivered ratio",
        f64::from(got) / 1000.0,
        0.60,
        binomial_5sigma(0.4, 1000),
    );
}

#[test]
fn duplication_sends_the_given_share_twice() {
    if !faultline_tests::privileged("duplication_sends_the_given_share_twice") {
        return;
    }
    let pair = NetPair::new("dup");
    let traffic = towards_b(&pair, Protocol::Udp, vec![]);
    let (distinct, total) = with_change(
        &pair,
        "dup1",
        &traffic,
        &Effect::Duplication { percent: 50.0 },
        || udp_delivery(&pair, 7200, 1000),
    );
    assert_eq!(distinct, 1000);
    assert_near(
        "duplication: received per sent",
        f64::from(total) / 1000.0,
        1.5,
        binomial_5sigma(0.5, 1000),
    );
}

#[test]
fn blackhole_swallows_connections() {
    if !faultline_tests::privileged("blackhole_swallows_connections") {
        return;
    }
    let pair = NetPair::new("hole");
    let _blocked = tcp_listener(&pair, 8080);
    let _open = tcp_listener(&pair, 8081);
    let traffic = towards_b(&pair, Protocol::Tcp, vec![(8080, 8080)]);
    with_change(&pair, "hole1", &traffic, &Effect::Blackhole, || {
        let err = connect_from_a(&pair, 8080, Duration::from_millis(700)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        connect_from_a(&pair, 8081, Duration::from_secs(2)).unwrap();
    });
    connect_from_a(&pair, 8080, Duration::from_secs(2)).unwrap();
}

#[test]
fn reject_refuses_connections_at_once() {
    if !faultline_tests::privileged("reject_refuses_connections_at_once") {
        return;
    }
    let pair = NetPair::new("reject");
    let _listener = tcp_listener(&pair, 8090);
    let traffic = towards_b(&pair, Protocol::Any, vec![(8090, 8090)]);
    with_change(&pair, "reject1", &traffic, &Effect::Reject, || {
        let start = Instant::now();
        let err = connect_from_a(&pair, 8090, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert!(start.elapsed() < Duration::from_millis(300));
    });
    connect_from_a(&pair, 8090, Duration::from_secs(2)).unwrap();
}

/// Sends one datagram to `b`:53 from `a` and waits for the echo.
fn dns_query(pair: &NetPair) -> std::io::Result<usize> {
    let socket = pair.within(&pair.a, || UdpSocket::bind((A_ADDR, 0)).unwrap());
    socket.connect((B_ADDR, 53)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Rejected in the sender's own output path, the send itself may fail with EPERM; the
    // ICMP error then still reaches the socket.
    let _ = socket.send(b"query");
    socket.recv(&mut [0u8; 64])
}

#[test]
fn dns_failure_rejects_port_53() {
    if !faultline_tests::privileged("dns_failure_rejects_port_53") {
        return;
    }
    let pair = NetPair::new("dns");
    let server = pair.within(&pair.b, || UdpSocket::bind(("0.0.0.0", 53)).unwrap());
    let stop = echo(server);
    let _tcp = tcp_listener(&pair, 53);
    assert_eq!(dns_query(&pair).unwrap(), 5);
    let traffic = towards_b(&pair, Protocol::Any, vec![]);
    with_change(&pair, "dns1", &traffic, &Effect::DnsFailure, || {
        let err = dns_query(&pair).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        let err = connect_from_a(&pair, 53, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    });
    assert_eq!(dns_query(&pair).unwrap(), 5);
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn dns_names_fail_chosen_queries_and_let_others_through() {
    if !faultline_tests::privileged("dns_names_fail_chosen_queries_and_let_others_through") {
        return;
    }
    let pair = NetPair::new("dnsn");
    let server = DnsServer::start(&pair);
    assert_resolves(&pair, "a.fail.test");
    let traffic = towards_b(&pair, Protocol::Udp, vec![]);
    for (tag, failure, status) in [
        ("dn1", DnsFailure::NxDomain, Some("NXDOMAIN")),
        ("dn2", DnsFailure::ServFail, Some("SERVFAIL")),
        ("dn3", DnsFailure::Timeout, None),
    ] {
        let effect = Effect::DnsNames {
            names: vec!["*.fail.test".into(), "Exact.Test.".into()],
            failure,
        };
        with_change(&pair, tag, &traffic, &effect, || {
            let reached = server.queries();
            for name in ["a.FAIL.test", "b.c.fail.test", "exact.test"] {
                let r = dig(&pair, name);
                eprintln!(
                    "dns {failure:?} {name}: {:?} after {:?}",
                    r.status, r.elapsed
                );
                assert_eq!(r.status.as_deref(), status, "{name}: {r:?}");
                assert!(r.addresses.is_empty(), "{name}: {r:?}");
                match status {
                    Some(_) => assert!(r.elapsed < Duration::from_millis(900), "{r:?}"),
                    // dig's own timeout: no answer at all, exit code 9.
                    None => assert_eq!(r.exit, Some(9), "{r:?}"),
                }
            }
            assert_eq!(
                server.queries(),
                reached,
                "a failed query reached the server"
            );
            // The suffix itself and other names pass untouched.
            assert_resolves(&pair, "fail.test");
            assert_resolves(&pair, "other.example");
            assert_eq!(server.queries(), reached + 2);
            assert_ne!(bound_queues(&pair, &pair.a), "", "no worker listens");
        });
        assert_eq!(
            bound_queues(&pair, &pair.a),
            "",
            "the worker is still bound"
        );
        assert_resolves(&pair, "a.fail.test");
    }
    // Every name (an empty list), answered from every server.
    let traffic = Traffic {
        destinations: vec![],
        ..towards_b(&pair, Protocol::Any, vec![])
    };
    let every = Effect::DnsNames {
        names: vec![],
        failure: DnsFailure::NxDomain,
    };
    with_change(&pair, "dn4", &traffic, &every, || {
        assert_eq!(dig(&pair, "x.example").status.as_deref(), Some("NXDOMAIN"));
    });
    assert_resolves(&pair, "x.example");
}

#[test]
fn dns_queries_flow_untouched_when_the_worker_is_gone() {
    if !faultline_tests::privileged("dns_queries_flow_untouched_when_the_worker_is_gone") {
        return;
    }
    let pair = NetPair::new("dnsw");
    let _server = DnsServer::start(&pair);
    let before = pair.snapshot();
    let traffic = towards_b(&pair, Protocol::Udp, vec![]);
    let effect = Effect::DnsNames {
        names: vec!["db.internal".into()],
        failure: DnsFailure::Timeout,
    };
    let journal = {
        let agent = NetworkBackend::new();
        let inverse = agent.prepare("dnw1", &traffic, &effect).unwrap();
        agent.apply("dnw1", &traffic, &effect, &inverse).unwrap();
        assert_eq!(dig(&pair, "db.internal").status, None);
        serde_json::to_string(&inverse).unwrap()
        // The agent "dies" here: its worker goes, its rules stay.
    };
    assert_ne!(pair.snapshot(), before, "the rules went with the worker");
    assert_resolves(&pair, "db.internal");
    let recovery = NetworkBackend::new();
    let inverse: Inverse = serde_json::from_str(&journal).unwrap();
    assert!(recovery.is_present(&inverse).unwrap());
    assert!(
        inverse
            .manual_steps()
            .contains("iptables-legacy -t mangle -X faultline_dnw1")
    );
    recovery.undo(&inverse).unwrap();
    assert_eq!(pair.snapshot(), before);
}

/// A DNS query for `name` (type A) sent from namespace `a` with a raw socket, its source
/// forged to `from`:5353.
fn forged_query(pair: &NetPair, from: Ipv4Addr, name: &str) {
    let mut query = simple_dns::Packet::new_query(0x5151);
    query.questions.push(simple_dns::Question::new(
        simple_dns::Name::new_unchecked(name),
        simple_dns::QTYPE::TYPE(simple_dns::TYPE::A),
        simple_dns::QCLASS::CLASS(simple_dns::CLASS::IN),
        false,
    ));
    let mut packet = Vec::new();
    etherparse::PacketBuilder::ipv4(from.octets(), B_ADDR.octets(), 64)
        .udp(5353, 53)
        .write(&mut packet, &query.build_bytes_vec().unwrap())
        .unwrap();
    pair.within(&pair.a, || {
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(255)),
        )
        .unwrap();
        raw.send_to(&packet, &std::net::SocketAddr::from((B_ADDR, 0)).into())
            .unwrap();
    });
}

#[test]
fn dns_answers_never_leave_the_namespace_for_a_forged_source() {
    if !faultline_tests::privileged("dns_answers_never_leave_the_namespace_for_a_forged_source") {
        return;
    }
    let pair = NetPair::new("dnsf");
    let server = DnsServer::start(&pair);
    // A victim address in `b`, which accepts packets from its own addresses (namespace-local
    // settings, gone with the namespace).
    let victim = Ipv4Addr::new(10, 77, 0, 99);
    pair.exec(
        &pair.b,
        &["ip", "addr", "add", "10.77.0.99/24", "dev", "v1"],
    );
    pair.exec(
        &pair.b,
        &["sysctl", "-qw", "net.ipv4.conf.all.accept_local=1"],
    );
    pair.exec(
        &pair.b,
        &["sysctl", "-qw", "net.ipv4.conf.v1.accept_local=1"],
    );
    let inbox = pair.within(&pair.b, || UdpSocket::bind((victim, 5353)).unwrap());
    inbox
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let effect = Effect::DnsNames {
        names: vec!["*.fail.test".into()],
        failure: DnsFailure::NxDomain,
    };
    let traffic = towards_b(&pair, Protocol::Udp, vec![]);
    let mut buf = [0u8; 512];
    with_change(&pair, "dnf1", &traffic, &effect, || {
        // Control: a forged query that passes reaches the server, whose answer reaches the
        // victim.
        forged_query(&pair, victim, "other.example");
        let n = inbox.recv(&mut buf).expect("the real server's answer");
        assert!(simple_dns::Packet::parse(&buf[..n]).is_ok());
        // A matching one is taken by the worker, whose answer stays inside `a`.
        let reached = server.queries();
        forged_query(&pair, victim, "x.fail.test");
        let got = inbox.recv(&mut buf);
        assert!(got.is_err(), "the worker answered a forged source: {got:?}");
        assert_eq!(server.queries(), reached);
    });
}

#[test]
fn delay_adds_latency_with_bounded_jitter() {
    if !faultline_tests::privileged("delay_adds_latency_with_bounded_jitter") {
        return;
    }
    let pair = NetPair::new("delay");
    let server = pair.within(&pair.b, || UdpSocket::bind(("0.0.0.0", 7300)).unwrap());
    let stop = echo(server);
    let client = pair.within(&pair.a, || UdpSocket::bind((A_ADDR, 0)).unwrap());
    client.connect((B_ADDR, 7300)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let baseline = median(rtts(&client, 20));
    let traffic = towards_b(&pair, Protocol::Udp, vec![(7300, 7300)]);
    let fixed = with_change(
        &pair,
        "delay1",
        &traffic,
        &Effect::Delay {
            delay_ms: 100,
            jitter_ms: 0,
        },
        || rtts(&client, 20),
    );
    let added = median(fixed.clone()) - baseline;
    eprintln!("delay: baseline {baseline:.3} ms, added median {added:.3} ms (target 100)");
    assert!(
        (added - 100.0).abs() <= 10.0,
        "added {added} ms, samples {fixed:?}"
    );
    let jittery = with_change(
        &pair,
        "delay2",
        &traffic,
        &Effect::Delay {
            delay_ms: 60,
            jitter_ms: 20,
        },
        || rtts(&client, 30),
    );
    let added: Vec<f64> = jittery.iter().map(|r| r - baseline).collect();
    let (lo, hi) = added
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    eprintln!("jitter 60±20 ms: added between {lo:.3} and {hi:.3} ms");
    assert!(lo >= 38.0 && hi <= 86.0, "added delays {added:?}");
    assert!(hi - lo >= 10.0, "no visible jitter: {added:?}");
    // Undone: back to the baseline.
    let after = median(rtts(&client, 10));
    assert!(after < baseline + 10.0, "after undo {after} ms");
    stop.store(true, Ordering::Relaxed);
}

/// Bulk TCP from `a` to `b` for `secs`; the rate in kbit/s over all but the first half second.
fn tcp_throughput_kbit(pair: &NetPair, port: u16, secs: f64) -> f64 {
    let listener = tcp_listener(pair, port);
    listener.set_nonblocking(false).unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let mut stream = connect_from_a(pair, port, Duration::from_secs(2)).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let start = Instant::now();
    let warmup = Duration::from_millis(500);
    let end = Duration::from_secs_f64(secs);
    let mut mark = None;
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while start.elapsed() < end {
        if mark.is_none() && start.elapsed() >= warmup {
            mark = Some((Instant::now(), received.load(Ordering::Relaxed)));
        }
        match stream.write(&chunk) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    let (t0, b0) = mark.unwrap();
    let bytes = received.load(Ordering::Relaxed) - b0;
    let rate = bytes as f64 * 8.0 / 1000.0 / t0.elapsed().as_secs_f64();
    drop(stream);
    reader.join().unwrap();
    rate
}

#[test]
fn bandwidth_caps_throughput() {
    if !faultline_tests::privileged("bandwidth_caps_throughput") {
        return;
    }
    let pair = NetPair::new("rate");
    // Whole interface: tbf.
    let all = Traffic {
        destinations: vec![],
        ..towards_b(&pair, Protocol::Any, vec![])
    };
    let rate = with_change(
        &pair,
        "rate1",
        &all,
        &Effect::Bandwidth { rate_kbit: 8000 },
        || tcp_throughput_kbit(&pair, 7400, 2.5),
    );
    assert_near("bandwidth tbf: kbit/s / cap", rate / 8000.0, 1.0, 0.15);
    // One destination and protocol: htb with u32 filters.
    let tcp = towards_b(&pair, Protocol::Tcp, vec![]);
    let rate = with_change(
        &pair,
        "rate2",
        &tcp,
        &Effect::Bandwidth { rate_kbit: 4000 },
        || tcp_throughput_kbit(&pair, 7401, 2.5),
    );
    assert_near("bandwidth htb: kbit/s / cap", rate / 4000.0, 1.0, 0.15);
}

#[test]
fn undo_works_from_a_fresh_backend_and_twice() {
    if !faultline_tests::privileged("undo_works_from_a_fresh_backend_and_twice") {
        return;
    }
    let pair = NetPair::new("restart");
    let before = pair.snapshot();
    let changes: Vec<(String, Traffic, Effect)> = vec![
        (
            "rs1".into(),
            towards_b(&pair, Protocol::Udp, vec![]),
            Effect::Loss { percent: 10.0 },
        ),
        (
            "rs2".into(),
            towards_b(&pair, Protocol::Tcp, vec![(80, 90)]),
            Effect::Delay {
                delay_ms: 10,
                jitter_ms: 1,
            },
        ),
        (
            "rs3".into(),
            towards_b(&pair, Protocol::Any, vec![]),
            Effect::Bandwidth { rate_kbit: 1000 },
        ),
        (
            "rs4".into(),
            towards_b(&pair, Protocol::Icmp, vec![]),
            Effect::Duplication { percent: 5.0 },
        ),
        (
            "rs6".into(),
            towards_b(&pair, Protocol::Udp, vec![]),
            Effect::DnsNames {
                names: vec!["db.internal".into()],
                failure: DnsFailure::Timeout,
            },
        ),
    ];
    let mut journal: Vec<String> = Vec::new();
    {
        let first = NetworkBackend::new();
        for (tag, traffic, effect) in &changes {
            let inverse = first.prepare(tag, traffic, effect).unwrap();
            journal.push(serde_json::to_string(&inverse).unwrap());
            first.apply(tag, traffic, effect, &inverse).unwrap();
        }
        // The process "dies": its workers go, the kernel state stays.
    }
    let second = NetworkBackend::new();
    for entry in journal.iter().rev() {
        let inverse: Inverse = serde_json::from_str(entry).unwrap();
        assert!(second.is_present(&inverse).unwrap(), "{entry}");
        second.undo(&inverse).unwrap();
        assert!(!second.is_present(&inverse).unwrap());
        second.undo(&inverse).unwrap();
    }
    assert_eq!(pair.snapshot(), before);

    // A partly applied change: prepared and journaled, never applied.
    let (tag, traffic, effect) = &changes[1];
    let inverse = second.prepare(tag, traffic, effect).unwrap();
    second.undo(&inverse).unwrap();
    assert_eq!(pair.snapshot(), before);

    // A namespace that is gone counts as undone.
    let inverse = second.prepare("rs5", &changes[0].1, &changes[0].2).unwrap();
    second
        .apply("rs5", &changes[0].1, &changes[0].2, &inverse)
        .unwrap();
    drop(pair);
    assert!(!second.is_present(&inverse).unwrap());
    second.undo(&inverse).unwrap();
}

fn dns_names(names: &[&str]) -> Effect {
    Effect::DnsNames {
        names: names.iter().map(|n| n.to_string()).collect(),
        failure: DnsFailure::NxDomain,
    }
}

#[test]
fn bad_parameters_are_refused() {
    if !faultline_tests::privileged("bad_parameters_are_refused") {
        return;
    }
    let pair = NetPair::new("bad");
    let backend = NetworkBackend::new();
    let good = towards_b(&pair, Protocol::Tcp, vec![]);
    let loss = Effect::Loss { percent: 1.0 };
    type Case = (Traffic, Effect, fn(&CapError) -> bool);
    let cases: Vec<Case> = vec![
        (
            Traffic {
                destinations: vec!["10.0.0.0/40".into()],
                ..good.clone()
            },
            loss.clone(),
            |e| matches!(e, CapError::Invalid(_)),
        ),
        (
            Traffic {
                interfaces: vec!["nosuch0".into()],
                ..good.clone()
            },
            loss.clone(),
            |e| matches!(e, CapError::TargetGone(_)),
        ),
        (
            Traffic {
                namespace: Namespace::Named(format!("{}-gone", pair.a)),
                ..good.clone()
            },
            loss.clone(),
            |e| matches!(e, CapError::TargetGone(_)),
        ),
        (good.clone(), Effect::Loss { percent: 101.0 }, |e| {
            matches!(e, CapError::Invalid(_))
        }),
        (
            Traffic {
                ports: vec![(90, 80)],
                ..good.clone()
            },
            loss.clone(),
            |e| matches!(e, CapError::Invalid(_)),
        ),
        (
            Traffic {
                interfaces: vec![],
                ..good.clone()
            },
            loss.clone(),
            |e| matches!(e, CapError::Invalid(_)),
        ),
        // DNS by name: UDP only, no ports, valid and few names.
        (
            good.clone(),
            dns_names(&["db.internal"]),
            |e| matches!(e, CapError::Invalid(r) if r.contains("udp")),
        ),
        (
            Traffic {
                ports: vec![(53, 53)],
                ..towards_b(&pair, Protocol::Udp, vec![])
            },
            dns_names(&["db.internal"]),
            |e| matches!(e, CapError::Invalid(r) if r.contains("ports")),
        ),
        (
            towards_b(&pair, Protocol::Udp, vec![]),
            dns_names(&["ok.example", "bad..name"]),
            |e| matches!(e, CapError::Invalid(r) if r.contains("#1") && r.contains("bad..name")),
        ),
        (
            towards_b(&pair, Protocol::Udp, vec![]),
            Effect::DnsNames {
                names: (0..1000).map(|i| format!("n{i}.example")).collect(),
                failure: DnsFailure::Timeout,
            },
            |e| matches!(e, CapError::Invalid(r) if r.contains("at most 256")),
        ),
    ];
    for (traffic, effect, expected) in cases {
        let err = backend.prepare("bad1", &traffic, &effect).unwrap_err();
        assert!(expected(&err), "{traffic:?} {effect:?}: {err}");
    }
    // A root qdisc someone else installed is not replaced.
    pair.exec(
        &pair.a,
        &[
            "tc", "qdisc", "add", "dev", A_IF, "root", "handle", "9:", "htb",
        ],
    );
    let err = backend
        .prepare("bad2", &good, &Effect::Bandwidth { rate_kbit: 100 })
        .unwrap_err();
    assert!(matches!(err, CapError::Unsupported(_)), "{err}");
}
