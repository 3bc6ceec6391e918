//! The agent's transport against the real binary on loopback: tokens, TLS, the Unix socket,
//! the Host/Origin guard, body limits, slow and idle clients, the connection cap, and a fault
//! in flight that still reverts on time.

use faultline::agent::auth::Role;
use faultline_tests::Sleeper;
use faultline_tests::agent::{Options, TestAgent, bin, call_tcp, parse_response};
use faultline_tests::wait_state;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn requests_without_a_valid_token_get_401_naming_why() {
    let agent = TestAgent::start(Options::default());
    let (code, v) =
        agent.raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let status = |auth: &str| {
        let raw = format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        );
        agent.raw(raw.as_bytes())
    };
    let cases = [
        ("", "no bearer token"),
        (
            "Authorization: Bearer flt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            "the token is not valid",
        ),
        (
            "Authorization: Basic dXNlcjpwYXNz\r\n",
            "malformed Authorization header",
        ),
        (
            "Authorization: Bearer\r\n",
            "malformed Authorization header",
        ),
    ];
    for (auth, needle) in cases {
        let (code, v) = status(auth);
        assert_eq!(code, 401, "{auth:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{auth:?}: {v}"
        );
    }
    let (code, v) = status(&format!(
        "Authorization: Bearer {}\r\n",
        agent.token(Role::Viewer)
    ));
    assert_eq!((code, v["accepting"].as_bool()), (200, Some(true)), "{v}");
}

/// A policy granting `process` (stop/cont) on these pids.
fn pause_policy(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\", \"cont\"] }}\n",
        list.join(", ")
    )
}

fn runs(agent: &TestAgent) -> usize {
    let (code, v) = agent.call("GET", "/v1/runs", "");
    assert_eq!(code, 200, "{v}");
    v["runs"].as_array().unwrap().len()
}

/// One raw exchange on a fresh TCP connection, read until the agent closes it.
fn exchange(agent: &TestAgent, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(agent.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn the_guard_refuses_foreign_hosts_cross_origin_changes_and_non_json_bodies_and_nothing_starts() {
    let target = Sleeper::start();
    let agent = TestAgent::start(Options::with_policy(pause_policy(&[target.pid()])));
    let admin = agent.token(Role::Admin);
    let body = format!(
        r#"{{"component": "process-pause", "params": {{"pid": {}}}, "duration": "30s"}}"#,
        target.pid()
    );
    let post = |headers: &str| {
        let raw = format!(
            "POST /v1/runs HTTP/1.1\r\nAuthorization: Bearer {admin}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
            body.len()
        );
        parse_response(&exchange(&agent, raw.as_bytes()))
    };
    // DNS rebinding: a page on attacker.example resolving to 127.0.0.1.
    let (code, v) = post("Host: attacker.example\r\nContent-Type: application/json\r\n");
    assert_eq!(code, 421, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("host \"attacker.example\" is not served here (DNS rebinding?)"),
        "{msg}"
    );
    let (code, v) = post("Host: attacker.example:7787\r\nContent-Type: application/json\r\n");
    assert_eq!(code, 421, "{v}");
    // A form post from another origin: text/plain needs no preflight in a browser.
    let (code, v) =
        post("Host: localhost\r\nOrigin: https://attacker.example\r\nContent-Type: text/plain\r\n");
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("origin \"https://attacker.example\""),
        "{v}"
    );
    let (code, v) =
        post("Host: localhost\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\n");
    assert_eq!(code, 403, "{v}");
    let (code, v) = post("Host: localhost\r\nContent-Type: text/plain\r\n");
    assert_eq!(code, 415, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("application/json"),
        "{v}"
    );
    // Refused before auth: a foreign host learns nothing, not even whether a token is valid.
    let raw = "GET /v1/status HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n";
    assert_eq!(parse_response(&exchange(&agent, raw.as_bytes())).0, 421);
    let text = exchange(&agent, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nOrigin: https://attacker.example\r\nConnection: close\r\n\r\n");
    assert!(
        !text.to_ascii_lowercase().contains("access-control-"),
        "no CORS header: {text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(&agent), 0, "nothing was started");
    assert_eq!(target.state(), 'S');
    // The same request, same-origin and JSON, does start: the refusals above were the guard's.
    let (code, v) =
        post("Host: localhost\r\nOrigin: http://localhost\r\nContent-Type: application/json\r\n");
    assert_eq!(code, 201, "{v}");
    assert!(
        wait_state(target.pid(), 'T', Duration::from_secs(20)),
        "{}",
        agent.output()
    );
    let (code, v) = agent.call(
        "POST",
        &format!("/v1/runs/{}/stop", v["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(target.state(), 'S');
}

#[test]
fn a_body_over_4_mib_gets_413_json_declared_or_chunked() {
    let agent = TestAgent::start(Options::default());
    let admin = agent.token(Role::Admin);
    let big = 5 << 20;
    let head = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
    );
    let mut s = TcpStream::connect(agent.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // Refused on the header alone: the 5 MiB need not be sent.
    let mut text = vec![0u8; 4096];
    let n = s.read(&mut text).unwrap();
    let (code, v) = parse_response(&String::from_utf8_lossy(&text[..n]));
    assert_eq!(code, 413, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("over the limit of 4 MiB"),
        "{v}"
    );
    // Chunked: no length up front; the limit cuts it as it grows.
    let mut s = TcpStream::connect(agent.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!(
        "POST /v1/runs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).as_bytes()).unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..80 {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if s.write_all(&frame).is_err() {
            break; // the agent answered and closed
        }
    }
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    let (code, v) = parse_response(&String::from_utf8_lossy(&text));
    assert_eq!(code, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4 MiB"), "{v}");
    assert_eq!(agent.call("GET", "/v1/status", "").0, 200);
}

#[test]
fn tls_serves_with_the_configured_certificate_and_refuses_plain_http() {
    let agent = TestAgent::start(Options {
        tls: true,
        ..Options::default()
    });
    assert!(
        agent.url().starts_with("https://127.0.0.1:"),
        "{}",
        agent.url()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, body) = rt.block_on(async {
        let r = agent
            .client()
            .get(format!("{}/v1/status", agent.url()))
            .bearer_auth(agent.token(Role::Viewer))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 200, "{body}");
    // Without a token, the TLS channel still gets the 401 JSON.
    let code = rt.block_on(async {
        agent
            .client()
            .get(format!("{}/v1/status", agent.url()))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 401);
    // Plain HTTP on the TLS port: no HTTP answer.
    let addr = agent.url().trim_start_matches("https://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    assert!(
        !String::from_utf8_lossy(&text).contains("\"ok\""),
        "served in clear"
    );
    // A client that does not trust the certificate cannot talk to it.
    let err = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/healthz", agent.url()))
            .send()
            .await
    });
    assert!(err.is_err(), "an untrusted certificate was accepted");
}

#[test]
fn a_unix_socket_is_mode_0660_replaces_a_stale_socket_and_nothing_else() {
    use std::os::unix::fs::PermissionsExt as _;
    let agent = TestAgent::start(Options {
        unix: true,
        ..Options::default()
    });
    let path = agent.socket().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "{}", path.display());
    // A real hyper client over the socket.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = agent.token(Role::Viewer).to_string();
    let (code, body) = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/v1/status")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let r = send.send_request(req).await.unwrap();
        let status = r.status().as_u16();
        use http_body_util::BodyExt as _;
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(code, 200, "{body}");
    let (code, _) = agent.call_as("flt_wrong", "GET", "/v1/status", "");
    assert_eq!(code, 401);
    drop(agent);

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let agent = TestAgent::start(Options {
        listen: Some(format!("unix:{}", stale.display())),
        ..Options::default()
    });
    assert_eq!(agent.call("GET", "/v1/status", "").0, 200);
    drop(agent);
    assert!(!stale.exists(), "the socket is removed on shutdown");

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let (code, said) = run_agent(
        dir.path(),
        &format!("listen = \"unix:{}\"\n", file.display()),
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("exists and is not a socket"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// Runs the agent with an `agent.toml` of `[agent] tokens = "tokens.toml"` plus `lines` in
/// `dir` (a valid tokens file is written); SIGTERM after 10 s if still running. Exit code and
/// output.
fn run_agent(dir: &std::path::Path, lines: &str) -> (Option<i32>, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let tokens = dir.join("tokens.toml");
    if !tokens.exists() {
        std::fs::write(&tokens, "").unwrap();
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("[agent]\ntokens = \"tokens.toml\"\n{lines}"),
    )
    .unwrap();
    let child = Command::new(bin())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--config")
        .arg(&config)
        .arg("agent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

#[test]
fn bad_configurations_exit_2_naming_file_line_and_column() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (code, said) = run_agent(dir.path(), "bogus = 1\n");
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("agent.toml:3:1: unknown field `bogus`"),
        "{said}"
    );
    let (code, said) = run_agent(dir.path(), "listen = \"0.0.0.0:0\"\n");
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("agent.toml:3:10: listen 0.0.0.0:0 is not a loopback address and no tls"),
        "{said}"
    );
    std::fs::set_permissions(
        dir.path().join("tokens.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, said) = run_agent(dir.path(), "");
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("readable by everyone"), "{said}");
}

#[test]
fn a_token_from_agent_token_add_works_and_the_file_holds_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let add = Command::new(bin())
        .args(["agent", "token", "add", "--tokens"])
        .arg(&tokens)
        .args(["--name", "ci", "--role", "viewer", "--team", "red"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&add.stdout).into_owned();
    assert!(add.status.success(), "{said}");
    let token = said.lines().next().unwrap().trim().to_string();
    assert!(token.starts_with("flt_") && token.len() == 47, "{said}");
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        !stored.contains(&token) && !stored.contains(&token[4..]),
        "{stored}"
    );
    assert!(
        stored.contains(&faultline::agent::auth::hash(&token)),
        "{stored}"
    );
    let list = Command::new(bin())
        .args(["agent", "token", "list", "--tokens"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "ci\tviewer\tred\n");
    // Quick start with flags only: no agent.toml.
    let mut child = Command::new(bin())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["agent", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .trim()
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let (code, v) = call_tcp(&addr, &token, "GET", "/v1/status", "");
    assert_eq!(code, 200, "{v}");
    let (code, _) = call_tcp(&addr, &format!("{token}x"), "GET", "/v1/status", "");
    assert_eq!(code, 401);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let revoke = Command::new(bin())
        .args(["agent", "token", "revoke", "--name", "ci", "--tokens"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    assert!(!std::fs::read_to_string(&tokens).unwrap().contains("ci"));
}

#[test]
fn a_client_sending_its_headers_a_byte_a_second_is_dropped() {
    let agent = TestAgent::start(Options {
        extra: "idle_timeout = \"1s\"\n".into(),
        ..Options::default()
    });
    let mut s = TcpStream::connect(agent.addr()).unwrap();
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    s.set_nonblocking(true).unwrap();
    let mut dropped = None;
    for &b in head.iter() {
        if s.write_all(&[b]).is_err() {
            dropped = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(n) if String::from_utf8_lossy(&buf[..n]).contains(" 200 ") => {
                panic!("answered a request still being sent")
            }
            // EOF, a reset, or hyper's last word before closing.
            _ => {
                dropped = Some(start.elapsed());
                break;
            }
        }
    }
    let dropped = dropped.expect("the slow client was never dropped");
    eprintln!(
        "slow client (1 byte per 250 ms) dropped after {} ms (idle_timeout 1s)",
        dropped.as_millis()
    );
    assert!(
        dropped >= Duration::from_millis(900) && dropped < Duration::from_secs(4),
        "{dropped:?}"
    );
    assert_eq!(agent.call("GET", "/v1/status", "").0, 200);
}

#[test]
fn an_idle_connection_flood_neither_starves_requests_nor_delays_a_revert() {
    let target = Sleeper::start();
    let agent = TestAgent::start(Options {
        policy: Some(pause_policy(&[target.pid()])),
        extra: "max_connections = 8\nidle_timeout = \"2s\"\n".into(),
        ..Options::default()
    });
    let body = format!(
        r#"{{"component": "process-pause", "params": {{"pid": {}}}, "duration": "4s"}}"#,
        target.pid()
    );
    let (code, v) = agent.call("POST", "/v1/runs", &body);
    assert_eq!(code, 201, "{v}");
    assert!(
        wait_state(target.pid(), 'T', Duration::from_secs(20)),
        "{}",
        agent.output()
    );
    let paused = Instant::now();
    // 2 x max_connections connections that never send a byte.
    let flood: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(agent.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Served ones are held until the idle timeout; the rest were answered 503 and closed.
    let mut refused = 0;
    for mut c in flood.iter().skip(8) {
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("the most it allows at once"), "{text}");
            refused += 1;
        }
    }
    assert!(
        refused >= 7,
        "{refused} of the 8 connections over the cap were answered 503"
    );
    // A legitimate client retrying gets in once the idle ones are closed.
    let asked = Instant::now();
    let (mut turned_away, mut reset) = (0, 0);
    let answered = loop {
        // Turned away: a 503, or a reset when the agent closed before reading the request.
        match agent.try_call("GET", "/v1/status", "") {
            Ok((200, _)) => break asked.elapsed(),
            Ok((503, _)) => turned_away += 1,
            Ok((code, v)) => panic!("{code}: {v}"),
            Err(_) => reset += 1,
        }
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "never answered during the flood"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "flood of 16 idle connections (cap 8, idle_timeout 2s): a legitimate request answered {} ms after it first tried ({turned_away} tries answered 503, {reset} reset)",
        answered.as_millis()
    );
    assert!(answered < Duration::from_secs(4), "{answered:?}");
    // The fault held its 4 s and reverted on time, flood or not.
    assert!(
        wait_state(target.pid(), 'S', Duration::from_secs(6)),
        "{}",
        agent.output()
    );
    let held = paused.elapsed();
    eprintln!(
        "process-pause of 4s under the flood: resumed {} ms after it was seen paused",
        held.as_millis()
    );
    assert!(held < Duration::from_millis(5500), "{held:?}");
    drop(flood);
}
