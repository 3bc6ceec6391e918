//! The network probes (`http-probe`, `tcp-probe`) through the real host against real servers on
//! loopback: what they measure, how a denied destination (by address, after resolution) comes
//! back as an error naming the rule, and that a huge body is cut at the host's cap while the
//! host's memory stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use faultline::host::{CallError, Host, LoadError, ProbePlugin};
use faultline::policy::Policy;
use faultline_tests::probeserver::ProbeServer;
use faultline_tests::{components as c, host, host_with, wasm};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One grant to every component: `outbound` with `scope` (the inside of `outbound = { … }`).
fn outbound(scope: &str) -> Policy {
    Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"outbound\"]\noutbound = {{ {scope} }}\n"
    ))
    .unwrap()
}

fn loopback() -> Policy {
    outbound(r#"destinations = ["127.0.0.1", "::1"]"#)
}

async fn probe(host: &Host, component: &str, policy: &Policy) -> ProbePlugin {
    faultline_tests::load_probe(host, &wasm(component), policy)
        .await
        .unwrap()
}

/// Runs one check; `Ok(outcome)` or the contract's error as text.
async fn check(host: &Host, probe: &ProbePlugin, params: &str) -> Result<(bool, String), String> {
    probe
        .validate(host, params)
        .await
        .map_err(|e| e.to_string())?;
    match probe.check(host, "ex-probes", params).await {
        Ok(o) => Ok((o.ok, o.message)),
        Err(e) => Err(e.to_string()),
    }
}

async fn passes(host: &Host, probe: &ProbePlugin, params: &str) {
    let (ok, message) = check(host, probe, params).await.unwrap();
    assert!(ok, "{params} should pass: {message}");
}

async fn fails(host: &Host, probe: &ProbePlugin, params: &str) -> String {
    let (ok, message) = check(host, probe, params).await.unwrap();
    assert!(!ok, "{params} should fail: {message}");
    message
}

#[tokio::test]
async fn http_probe_judges_status_ranges_body_regex_and_json_pointers() {
    let server = ProbeServer::start().await;
    let (host, _d) = host();
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    let url = |path: &str| server.url(path);
    passes(
        &host,
        &p,
        &format!(r#"{{"url": "{}"}}"#, url("/status/204")),
    )
    .await;
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "{}"}}"#, url("/status/503")),
    )
    .await;
    assert!(m.contains("status 503 is not expected"), "{m}");
    passes(
        &host,
        &p,
        &format!(
            r#"{{"url": "{}", "status_codes": ["500-503", 404]}}"#,
            url("/status/503")
        ),
    )
    .await;
    passes(
        &host,
        &p,
        &format!(r#"{{"url": "{}", "status_codes": [404]}}"#, url("/nowhere")),
    )
    .await;
    passes(
        &host,
        &p,
        &format!(
            r#"{{"url": "{}", "body_regex": "^status 2\\d\\d$"}}"#,
            url("/status/200")
        ),
    )
    .await;
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "{}", "body_regex": "DOWN"}}"#, url("/json")),
    )
    .await;
    assert!(m.contains("does not match"), "{m}");
    let json = |pointer: &str, op: &str, value: &str| {
        format!(
            r#"{{"url": "{}", "json": {{"pointer": "{pointer}", "op": "{op}", "value": {value}}}}}"#,
            url("/json")
        )
    };
    passes(&host, &p, &json("/status", "==", r#""UP""#)).await;
    passes(&host, &p, &json("/count", ">=", "3")).await;
    passes(&host, &p, &json("/tags", "contains", r#""b""#)).await;
    let m = fails(&host, &p, &json("/count", ">", "5")).await;
    assert!(m.contains("/count is 3"), "{m}");
    let m = fails(&host, &p, &json("/missing", "==", "1")).await;
    assert!(m.contains("nothing at JSON pointer"), "{m}");
    // Method, headers and body reach the server.
    passes(
        &host,
        &p,
        &format!(
            r#"{{"url": "{}", "method": "POST", "headers": {{"X-Probe": "yes"}}, "body": "ping", "body_regex": "^POST yes ping$"}}"#,
            url("/echo")
        ),
    )
    .await;
    // Bad parameters are the probe's error, not a failed check.
    let e = check(&host, &p, r#"{"url": "ftp://x/"}"#)
        .await
        .unwrap_err();
    assert!(e.contains("invalid") && e.contains("ftp://x/"), "{e}");
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "{}", "status_codes": ["299-200"]}}"#, url("/")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("status_codes"), "{e}");
}

#[tokio::test]
async fn http_probe_fails_a_slow_answer_and_a_refused_or_unverified_server() {
    let server = ProbeServer::start().await;
    let (host, _d) = host_with(|c| c.call_timeout = Duration::from_secs(5));
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    let slow = server.url("/slow/400");
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "{slow}", "max_response_time": "150ms"}}"#),
    )
    .await;
    assert!(m.contains("more than 150ms"), "{m}");
    passes(
        &host,
        &p,
        &format!(r#"{{"url": "{slow}", "max_response_time": "2s"}}"#),
    )
    .await;
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "{slow}", "timeout": "100ms"}}"#),
    )
    .await;
    assert!(m.contains("timed out"), "{m}");
    // A port nobody listens on refuses.
    let port = faultline_tests::free_port();
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "http://127.0.0.1:{port}/"}}"#),
    )
    .await;
    assert!(m.contains("refused"), "{m}");
    // A self-signed certificate does not verify: the service failed the check.
    let tls = ProbeServer::start_tls().await;
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "https://localhost:{}/json"}}"#, tls.addr.port()),
    )
    .await;
    assert!(m.contains("TLS"), "{m}");
}

/// An operator's own CA (`[outbound] ca_files`) makes its servers verify; verification stays on
/// for everything else. Through the host, and through `faultline probe --config`.
#[tokio::test]
async fn an_extra_trusted_root_lets_an_internal_https_server_verify() {
    let tls = ProbeServer::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), tls.cert_pem.as_ref().unwrap()).unwrap();
    let config = dir.path().join("faultline.toml");
    std::fs::write(&config, "[outbound]\nca_files = [\"ca.pem\"]\n").unwrap();
    let roots = faultline::capability::outbound::config::OutboundConfig::load(&config)
        .unwrap()
        .trusted_roots()
        .unwrap();
    assert_eq!(roots.len(), 1);
    let url = format!("https://localhost:{}/json", tls.addr.port());
    let params = format!(r#"{{"url": "{url}"}}"#);

    let (host, _d) = host_with(|c| c.trusted_roots = roots);
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    passes(&host, &p, &params).await;
    // Another self-signed server is still refused: the extra root is not "trust anything".
    let other = ProbeServer::start_tls().await;
    let m = fails(
        &host,
        &p,
        &format!(
            r#"{{"url": "https://localhost:{}/json"}}"#,
            other.addr.port()
        ),
    )
    .await;
    assert!(m.contains("TLS"), "{m}");

    // The CLI reads the same table from --config.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"outbound\"]\noutbound = { destinations = [\"127.0.0.1\", \"::1\"] }\n",
    )
    .unwrap();
    let run = |config: Option<&std::path::Path>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline-e2e"));
        cmd.arg("--state-dir").arg(dir.path().join("state"));
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(["probe", c::HTTP_PROBE, "--param"])
            .arg(format!("url={url}"))
            .arg("--policy")
            .arg(&policy)
            .output()
    };
    let out = run(Some(&config)).await.unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let out = run(None).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "without the CA the check fails");
    // A CA file that holds no certificate is a usage error naming it.
    std::fs::write(dir.path().join("ca.pem"), "nothing\n").unwrap();
    let out = run(Some(&config)).await.unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("[outbound] ca_files[0]"), "{said}");
}

#[tokio::test]
async fn http_probe_success_rate_over_n_requests_at_a_rate() {
    let server = ProbeServer::start().await;
    let (host, _d) = host_with(|c| c.call_timeout = Duration::from_secs(5));
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    let flaky = server.url("/flaky");
    let params = |threshold: u32| {
        format!(r#"{{"url": "{flaky}", "requests": 10, "rate": 50, "success_rate": {threshold}}}"#)
    };
    let before = server.requests.load(Ordering::Relaxed);
    let start = std::time::Instant::now();
    let (ok, m) = check(&host, &p, &params(50)).await.unwrap();
    let took = start.elapsed();
    assert!(ok, "{m}");
    assert!(m.starts_with("5 of 10 requests passed (50.0%"), "{m}");
    assert_eq!(server.requests.load(Ordering::Relaxed) - before, 10);
    // Ten requests at 50 per second take at least the nine intervals between them.
    assert!(took >= Duration::from_millis(180), "{took:?}");
    let m = fails(&host, &p, &params(60)).await;
    assert!(m.contains("60.0% required"), "{m}");
    // Zero completed requests fail, whatever the threshold.
    let port = faultline_tests::free_port();
    let m = fails(
        &host,
        &p,
        &format!(r#"{{"url": "http://127.0.0.1:{port}/", "requests": 3, "rate": 100, "success_rate": 0}}"#),
    )
    .await;
    assert!(m.contains("0 completed"), "{m}");
}

#[tokio::test]
async fn a_name_that_resolves_outside_the_destinations_is_denied_naming_the_rule() {
    let server = ProbeServer::start().await;
    let (host, _d) = host();
    let port = server.addr.port();
    // `localhost` is granted by name, but 127.0.0.0/8 is not a destination: the name resolves
    // there, so the request is denied (no rebinding a granted name onto a forbidden address).
    let policy = outbound(r#"destinations = ["10.0.0.0/8"], hosts = ["localhost"]"#);
    let p = probe(&host, c::HTTP_PROBE, &policy).await;
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "http://localhost:{port}/json"}}"#),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("denied") && e.contains("localhost (127.0.0.1") && e.contains("grant 1 (*)"),
        "{e}"
    );
    // A name the hosts filter does not list is denied before any lookup.
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "http://ip6-localhost:{port}/"}}"#),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("denied") && e.contains("ip6-localhost is outside"),
        "{e}"
    );
    // With the address granted the same request passes; a port outside `ports` does not.
    let policy = outbound(&format!(
        r#"destinations = ["127.0.0.0/8"], ports = [{port}], hosts = ["localhost"]"#
    ));
    let p = probe(&host, c::HTTP_PROBE, &policy).await;
    passes(
        &host,
        &p,
        &format!(r#"{{"url": "http://localhost:{port}/json"}}"#),
    )
    .await;
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "http://127.0.0.1:{}/"}}"#, port ^ 1),
    )
    .await
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");
    let t = probe(&host, c::TCP_PROBE, &policy).await;
    let e = check(
        &host,
        &t,
        &format!(r#"{{"host": "127.0.0.1", "port": {}}}"#, port ^ 1),
    )
    .await
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");
}

#[tokio::test]
async fn the_agent_api_port_is_never_reachable_even_when_granted() {
    let server = ProbeServer::start().await;
    let (host, _d) = host();
    host.protect_endpoint(server.addr);
    let policy = outbound(r#"destinations = ["0.0.0.0/0", "::/0"]"#);
    let p = probe(&host, c::HTTP_PROBE, &policy).await;
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "{}"}}"#, server.url("/json")),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("denied") && e.contains("the agent's own API"),
        "{e}"
    );
    let t = probe(&host, c::TCP_PROBE, &policy).await;
    let params = format!(r#"{{"host": "127.0.0.1", "port": {}}}"#, server.addr.port());
    let e = check(&host, &t, &params).await.unwrap_err();
    assert!(e.contains("denied"), "{e}");
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);
    // 0.0.0.0 reaches this host: never reachable either.
    let e = check(&host, &p, r#"{"url": "http://0.0.0.0:9/"}"#)
        .await
        .unwrap_err();
    assert!(e.contains("means this host"), "{e}");
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_huge_body_is_cut_at_the_cap_and_host_memory_stays_bounded() {
    let server = ProbeServer::start().await;
    let (host, _d) = host_with(|c| c.call_timeout = Duration::from_secs(20));
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    let params = format!(
        r#"{{"url": "{}", "timeout": "10s"}}"#,
        server.url("/big/200")
    );
    let before = rss();
    let m = fails(&host, &p, &params).await;
    let grew = rss().saturating_sub(before);
    assert!(m.contains("body") && m.contains("16777216"), "{m}");
    let sent = server.big_sent.load(Ordering::Relaxed);
    eprintln!(
        "200 MiB body: server sent {} MiB before the cut, host RSS grew {} MiB",
        sent >> 20,
        grew >> 20
    );
    assert!(
        sent < 64 << 20,
        "the host read {sent} bytes of a capped body"
    );
    assert!(grew < 48 << 20, "host RSS grew by {grew} bytes");
}

#[tokio::test]
async fn tcp_probe_connects_sends_and_expects_and_fails_refused_and_timed_out() {
    let (host, _d) = host_with(|c| c.call_timeout = Duration::from_secs(5));
    let t = probe(&host, c::TCP_PROBE, &loopback()).await;
    // A server that answers PONG to PING.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await
                    && buf[..n].starts_with(b"PING")
                {
                    let _ = s.write_all(b"PONG\n").await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    passes(
        &host,
        &t,
        &format!(r#"{{"host": "127.0.0.1", "port": {port}}}"#),
    )
    .await;
    passes(
        &host,
        &t,
        &format!(r#"{{"host": "localhost", "port": {port}, "send": "PING\n", "expect": "PONG"}}"#),
    )
    .await;
    let m = fails(
        &host,
        &t,
        &format!(r#"{{"host": "127.0.0.1", "port": {port}, "send": "HELLO\n", "expect": "PONG", "timeout": "300ms"}}"#),
    )
    .await;
    assert!(m.contains("not received within"), "{m}");
    server.abort();
    let free = faultline_tests::free_port();
    let m = fails(
        &host,
        &t,
        &format!(r#"{{"host": "127.0.0.1", "port": {free}}}"#),
    )
    .await;
    assert!(m.contains("refused"), "{m}");
    // A listener that never accepts, its backlog full: the kernel drops further SYNs, so the
    // connect times out.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let port = full.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_millis(200),
            s.connect(full.local_addr().unwrap()),
        )
        .await
        {
            fillers.push(c);
        }
    }
    let start = std::time::Instant::now();
    let m = fails(
        &host,
        &t,
        &format!(r#"{{"host": "127.0.0.1", "port": {port}, "timeout": "400ms"}}"#),
    )
    .await;
    assert!(m.contains("no connection within 400ms"), "{m}");
    assert!(start.elapsed() >= Duration::from_millis(400));
    drop(full);
}

#[tokio::test]
async fn wasi_http_and_sockets_imports_are_refused_unless_outbound_is_granted() {
    let (host, _d) = host();
    let nothing =
        Policy::parse("[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\n").unwrap();
    for component in [c::HTTP_PROBE, c::TCP_PROBE] {
        let e = faultline_tests::load_probe(&host, &wasm(component), &nothing)
            .await
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(matches!(e, LoadError::Refused(_)), "{text}");
        assert!(
            (text.contains("wasi:http/") || text.contains("wasi:sockets/"))
                && text.contains("does not grant")
                && text.contains("grant 1 (*)"),
            "{text}"
        );
    }
    // Described with nothing granted, the probe's calls are denied, never trapped.
    let p = probe(&host, c::HTTP_PROBE, &loopback()).await;
    let e = p
        .check(&host, "ex-probes", r#"{"url": "http://10.1.2.3/"}"#)
        .await;
    assert!(matches!(e, Err(CallError::Guest { .. })), "{e:?}");
}

#[tokio::test]
async fn the_0_1_0_outbound_interface_goes_through_the_same_client_and_checks() {
    let server = ProbeServer::start().await;
    let (host, _d) = host();
    let p = probe(&host, c::OLD_OUTBOUND, &loopback()).await;
    let (ok, m) = check(
        &host,
        &p,
        &format!(r#"{{"url": "{}"}}"#, server.url("/json")),
    )
    .await
    .unwrap();
    assert!(ok && m.contains(r#""status":"UP""#), "{m}");
    let port = server.addr.port();
    let (ok, m) = check(
        &host,
        &p,
        &format!(r#"{{"host": "localhost", "port": {port}}}"#),
    )
    .await
    .unwrap();
    assert!(ok && m.starts_with("connected in"), "{m}");
    // The same address check: a name resolving outside the destinations is denied.
    let policy = outbound(r#"destinations = ["10.0.0.0/8"]"#);
    let p = probe(&host, c::OLD_OUTBOUND, &policy).await;
    let e = check(
        &host,
        &p,
        &format!(r#"{{"host": "localhost", "port": {port}}}"#),
    )
    .await
    .unwrap_err();
    assert!(e.contains("denied") && e.contains("grant 1 (*)"), "{e}");
    let e = check(
        &host,
        &p,
        &format!(r#"{{"url": "{}"}}"#, server.url("/big/100")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");
    // `http-get` keeps 64 KiB of a big body and never reads the rest.
    let p = probe(&host, c::OLD_OUTBOUND, &loopback()).await;
    let probe_params = format!(r#"{{"url": "{}"}}"#, server.url("/big/100"));
    let o = p.check(&host, "ex-probes", &probe_params).await.unwrap();
    assert_eq!(o.value, Some(65536.0));
    assert!(server.big_sent.load(Ordering::Relaxed) < 16 << 20);
}
