//! The agent's API over real HTTP on loopback, against the real binary: every route of the
//! OpenAPI document answers its documented method, role checks refuse with a JSON reason and
//! start nothing (the target process stays `S`), and a barrage of bad requests — malformed
//! JSON, unknown fields, wrong types, a missing content type, huge ids, path tricks — gets JSON
//! 4xx while a run in flight stays held and reverts on time.
//!
//! The agent is started here with `faultline agent --listen 127.0.0.1:0 --tokens F` (a minimal
//! spawn of its own; the shared `TestAgent` of tests/src/agent.rs covers the config file).

use faultline_tests::Sleeper;
use faultline_tests::wait_state;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

/// A real agent with one token per role (team `red`) and a runner of team `blue`.
struct Agent {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

const ROLES: [(&str, &str, &str); 4] = [
    ("viewer", "viewer", "red"),
    ("runner", "runner", "red"),
    ("admin", "admin", "red"),
    ("blue", "runner", "blue"),
];

impl Agent {
    /// An agent whose policy grants `process` on `pids` only.
    fn start(pids: &[u32]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = String::new();
        for (name, role, team) in ROLES {
            let hash = hex::encode(Sha256::digest(token(name).as_bytes()));
            tokens.push_str(&format!(
                "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nteam = \"{team}\"\nsha256 = \"{hash}\"\n\n"
            ));
        }
        std::fs::write(dir.path().join("tokens.toml"), tokens).unwrap();
        // The agent refuses a tokens file others may read.
        std::fs::set_permissions(
            dir.path().join("tokens.toml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        std::fs::write(
            dir.path().join("policy.toml"),
            format!(
                "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\", \"cont\"] }}\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["agent", "--listen", "127.0.0.1:0", "--call-timeout", "2s"])
            .arg("--tokens")
            .arg(dir.path().join("tokens.toml"))
            .arg("--policy")
            .arg(dir.path().join("policy.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .trim()
            .to_string();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let agent = Agent {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.call("GET", "/readyz", None, None).status != 200 {
            assert!(Instant::now() < deadline, "the agent never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    /// A request; `who` names the token (`None`: no Authorization header); a body is sent as
    /// JSON.
    fn call(&self, method: &str, path: &str, who: Option<&str>, body: Option<&str>) -> Reply {
        let mut headers = Vec::new();
        if let Some(who) = who {
            headers.push(format!("Authorization: Bearer {}", token(who)));
        }
        if body.is_some() {
            headers.push("Content-Type: application/json".into());
        }
        raw(
            &self.addr,
            method,
            path,
            &headers,
            body.unwrap_or("").as_bytes(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: the agent reverts everything before it exits.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// The token of a role name (deterministic: the tokens file holds only its hash).
fn token(who: &str) -> String {
    format!("flt_test_{who}_0123456789abcdef")
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The `error` of a JSON error body.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.body))
            .to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request on a connection of its own, the path sent exactly as given (no
/// client-side normalisation of `..` or percent escapes).
fn raw(addr: &str, method: &str, path: &str, headers: &[String], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn pause(agent: &Agent, who: &str, pid: u32, duration: &str) -> Reply {
    agent.call(
        "POST",
        "/v1/runs",
        Some(who),
        Some(&format!(
            r#"{{"component": "process-pause", "params": {{"pid": {pid}}}, "duration": "{duration}"}}"#
        )),
    )
}

#[test]
fn every_route_of_the_openapi_document_answers_its_method() {
    let target = Sleeper::start();
    let agent = Agent::start(&[target.pid()]);
    // A real run, so the run routes have an id to answer for.
    let started = pause(&agent, "runner", target.pid(), "30s");
    assert_eq!(started.status, 201, "{}", started.body);
    let run = started.json()["id"].as_str().unwrap().to_string();

    let doc = agent.call("GET", "/openapi.json", Some("viewer"), None);
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    let mut calls = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{name}", "process-pause").replace(
                "{id}",
                if path.starts_with("/v1/runs") {
                    &run
                } else {
                    "01NOSUCHEXECUTION"
                },
            );
            let body = (method != "get").then_some("{}");
            // Stops go last: the run must stay held while the rest is called.
            if concrete.ends_with("/stop") || path == "/v1/emergency-stop" {
                continue;
            }
            let reply = agent.call(&method.to_uppercase(), &concrete, Some("admin"), body);
            calls += 1;
            assert_ne!(reply.status, 405, "{method} {path}: {}", reply.body);
            if reply.status == 404 {
                // Only an unknown execution may be 404, never the route itself.
                let e = reply.error();
                assert!(e.contains("no execution with id"), "{method} {path}: {e}");
            }
            if reply.status >= 400 {
                assert!(!reply.error().is_empty(), "{method} {path}");
            }
        }
    }
    assert!(calls >= 18, "{calls}");
    // The run was held throughout; the admin stops it, then the emergency stop and clear.
    assert_eq!(target.state(), 'T');
    let stopped = agent.call("POST", &format!("/v1/runs/{run}/stop"), Some("admin"), None);
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.json()["status"], "stopped", "{}", stopped.body);
    assert!(wait_state(target.pid(), 'S', Duration::from_secs(2)));
    let estop = agent.call("POST", "/v1/emergency-stop", Some("admin"), Some("{}"));
    assert_eq!(estop.status, 200, "{}", estop.body);
    let clear = agent.call("DELETE", "/v1/emergency-stop", Some("admin"), None);
    assert_eq!(clear.status, 200, "{}", clear.body);
    assert_eq!(clear.json()["cleared"], true);

    // The probes need no token; everything else does.
    assert_eq!(agent.call("GET", "/healthz", None, None).json()["ok"], true);
    assert_eq!(
        agent.call("GET", "/readyz", None, None).json()["ready"],
        true
    );
    for (path, item) in paths {
        if path == "/healthz" || path == "/readyz" {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{name}", "x").replace("{id}", "x");
            let reply = agent.call(&method.to_uppercase(), &concrete, None, None);
            assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
            assert!(reply.error().contains("token"), "{}", reply.body);
        }
    }
}

#[test]
fn roles_are_checked_with_a_json_reason_and_nothing_starts() {
    let target = Sleeper::start();
    let agent = Agent::start(&[target.pid()]);
    // A viewer reads but cannot start, renew or stop.
    let refused = pause(&agent, "viewer", target.pid(), "30s");
    assert_eq!(refused.status, 403, "{}", refused.body);
    let e = refused.error();
    assert!(e.contains("runner role") && e.contains("\"viewer\""), "{e}");
    let refused = agent.call(
        "POST",
        "/v1/experiments",
        Some("viewer"),
        Some(r#"{"experiment": "name: x"}"#),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.error().contains("runner role"), "{}", refused.body);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(target.state(), 'S', "a refused start paused the target");
    assert_eq!(
        agent.call("GET", "/v1/runs", Some("viewer"), None).json()["runs"],
        serde_json::json!([])
    );

    // A runner starts; a viewer cannot stop it; a runner cannot emergency-stop or sync.
    let started = pause(&agent, "runner", target.pid(), "30s");
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.json()["id"].as_str().unwrap().to_string();
    assert!(wait_state(target.pid(), 'T', Duration::from_secs(5)));
    for (method, path, who, role) in [
        (
            "POST",
            format!("/v1/runs/{id}/stop"),
            "viewer",
            "runner role",
        ),
        (
            "POST",
            format!("/v1/runs/{id}/heartbeat"),
            "viewer",
            "runner role",
        ),
        (
            "POST",
            format!("/v1/experiments/{id}/stop"),
            "viewer",
            "runner role",
        ),
        (
            "POST",
            "/v1/emergency-stop".to_string(),
            "runner",
            "admin role",
        ),
        (
            "DELETE",
            "/v1/emergency-stop".to_string(),
            "runner",
            "admin role",
        ),
        ("POST", "/v1/hub/sync".to_string(), "runner", "admin role"),
        ("POST", "/v1/hub/pull".to_string(), "viewer", "runner role"),
    ] {
        let body = (method == "POST").then_some(r#"{"reference": "process-pause"}"#);
        let body = if path.ends_with("/pull") { body } else { None };
        let r = agent.call(method, &path, Some(who), body);
        assert_eq!(r.status, 403, "{method} {path} as {who}: {}", r.body);
        assert!(r.error().contains(role), "{method} {path}: {}", r.body);
    }
    assert_eq!(target.state(), 'T', "a refused stop reverted the run");

    // An admin's emergency stop reverts it and refuses new runs until cleared.
    let estop = agent.call(
        "POST",
        "/v1/emergency-stop",
        Some("admin"),
        Some(r#"{"reason": "drill"}"#),
    );
    assert_eq!(estop.status, 200, "{}", estop.body);
    assert_eq!(estop.json()["runs"]["stopped"], 1, "{}", estop.body);
    assert!(wait_state(target.pid(), 'S', Duration::from_secs(2)));
    let status = agent.call("GET", "/v1/status", Some("viewer"), None).json();
    assert_eq!(status["accepting"], false, "{status}");
    assert!(
        status["refusing"].as_str().unwrap().contains("drill"),
        "{status}"
    );
    let refused = pause(&agent, "runner", target.pid(), "30s");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.error().contains("drill"), "{}", refused.body);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(target.state(), 'S');
    assert_eq!(
        agent
            .call("DELETE", "/v1/emergency-stop", Some("admin"), None)
            .json()["cleared"],
        true
    );
    assert_eq!(
        agent.call("GET", "/v1/status", Some("viewer"), None).json()["accepting"],
        true
    );
    // The admin syncs the hubs; the bundled index stays in use.
    let sync = agent.call("POST", "/v1/hub/sync", Some("admin"), None);
    assert_eq!(sync.status, 200, "{}", sync.body);
    assert_eq!(sync.json()["ok"], true, "{}", sync.body);
    assert!(!sync.json()["indexes"].as_array().unwrap().is_empty());
}

#[test]
fn bad_requests_get_json_4xx_while_a_run_in_flight_stays_held_and_reverts_on_time() {
    let target = Sleeper::start();
    let agent = Agent::start(&[target.pid()]);
    let started = pause(&agent, "runner", target.pid(), "4s");
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.json()["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    assert!(wait_state(target.pid(), 'T', Duration::from_secs(2)));

    let runner = format!("Authorization: Bearer {}", token("runner"));
    let json = "Content-Type: application/json".to_string();
    let huge = "x".repeat(10_000);
    // Method, path, headers, body; the status and a phrase the error must contain.
    type Case<'a> = (&'a str, String, Vec<String>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), json.clone()],
            "{\"component\": ",
            400,
            "line 1",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), json.clone()],
            r#"{"component": "process-pause", "colour": 1}"#,
            400,
            "unknown field `colour`",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), json.clone()],
            r#"{"component": 7}"#,
            400,
            "field `component`",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), json.clone()],
            r#"{"component": "process-pause", "duration": "forever"}"#,
            400,
            "field `duration`",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone()],
            r#"{"component": "process-pause"}"#,
            415,
            "Content-Type",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), "Content-Type: text/plain".into()],
            r#"{"component": "process-pause"}"#,
            415,
            "text/plain",
        ),
        (
            "POST",
            "/v1/runs".into(),
            vec![runner.clone(), json.clone()],
            r#"{"component": "../../etc/passwd"}"#,
            400,
            "",
        ),
        (
            "POST",
            "/v1/experiments".into(),
            vec![runner.clone(), json.clone()],
            r#"{"experiment": "x", "lease": 5}"#,
            400,
            "field `lease`",
        ),
        (
            "POST",
            "/v1/emergency-stop".into(),
            vec![
                format!("Authorization: Bearer {}", token("admin")),
                json.clone(),
            ],
            r#"{"reasn": "x"}"#,
            400,
            "unknown field `reasn`",
        ),
        (
            "GET",
            format!("/v1/runs/{huge}"),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            format!("/v1/experiments/{}", "a".repeat(65)),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            "/v1/experiments/..%2f..%2fetc%2fpasswd".into(),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            "/v1/experiments/%2e%2e".into(),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            "/v1/experiments/a%00b/log".into(),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            "/v1/runs/%ff%fe".into(),
            vec![runner.clone()],
            "",
            400,
            "id",
        ),
        (
            "GET",
            "/v1/experiments/../../etc/passwd".into(),
            vec![runner.clone()],
            "",
            404,
            "no such route",
        ),
        (
            "GET",
            "/v1/hub/packages/..%2fx".into(),
            vec![runner.clone()],
            "",
            400,
            "is not valid",
        ),
        (
            "GET",
            "/v1/experiments?limit=lots".into(),
            vec![runner.clone()],
            "",
            400,
            "limit",
        ),
        (
            "GET",
            "/v1/hub/packages?kind=virus".into(),
            vec![runner.clone()],
            "",
            400,
            "`kind`",
        ),
        (
            "GET",
            "/v1/nope".into(),
            vec![runner.clone()],
            "",
            404,
            "no such route",
        ),
        (
            "PUT",
            "/v1/runs".into(),
            vec![runner.clone()],
            "",
            405,
            "PUT is not allowed",
        ),
        (
            "POST",
            "/v1/runs/no-such-run/stop".to_string(),
            vec![runner.clone()],
            "",
            404,
            "no run with id",
        ),
        (
            "GET",
            "/v1/status".into(),
            vec!["Authorization: Bearer nope".into()],
            "",
            401,
            "token",
        ),
        ("GET", "/v1/status".into(), vec![], "", 401, "token"),
    ];
    for round in 0..3 {
        for (method, path, headers, body, status, says) in &cases {
            let reply = raw(&agent.addr, method, path, headers, body.as_bytes());
            let shown = &path[..path.len().min(60)];
            assert_eq!(reply.status, *status, "{method} {shown}: {}", reply.body);
            assert!(
                reply
                    .header("content-type")
                    .unwrap_or_default()
                    .starts_with("application/json"),
                "{method} {shown}: {}",
                reply.head
            );
            let e = reply.error();
            assert!(e.contains(says), "{method} {shown}: {e}");
            assert!(e.len() < 600, "{method} {shown}: an unbounded message: {e}");
        }
        if round == 0 {
            // Still held after a round of abuse.
            assert_eq!(target.state(), 'T');
        }
    }
    let view = agent.call("GET", &format!("/v1/runs/{id}"), Some("viewer"), None);
    assert_eq!(view.status, 200, "{}", view.body);
    if t0.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            target.state(),
            'T',
            "the run did not stay held: {}",
            view.body
        );
    }
    // Reverted on time: the 4 s duration, plus a second of slack.
    assert!(
        wait_state(
            target.pid(),
            'S',
            Duration::from_secs(6).saturating_sub(t0.elapsed())
        ),
        "not reverted within 6 s"
    );
    let reverted_after = t0.elapsed();
    assert!(
        reverted_after >= Duration::from_millis(3900),
        "{reverted_after:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let view = agent
            .call("GET", &format!("/v1/runs/{id}"), Some("viewer"), None)
            .json();
        if view["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its lease cannot be renewed once it has ended.
    let late = agent.call(
        "POST",
        &format!("/v1/runs/{id}/heartbeat"),
        Some("runner"),
        None,
    );
    assert_eq!(late.status, 409, "{}", late.body);
    eprintln!(
        "run held through {} bad requests, reverted after {reverted_after:?}",
        cases.len() * 3
    );
}

#[test]
fn metrics_answer_in_the_format_the_scraper_asks_for() {
    let agent = Agent::start(&[]);
    let viewer = format!("Authorization: Bearer {}", token("viewer"));
    let text = raw(
        &agent.addr,
        "GET",
        "/metrics",
        std::slice::from_ref(&viewer),
        b"",
    );
    assert_eq!(text.status, 200, "{}", text.body);
    assert_eq!(
        text.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let open = raw(
        &agent.addr,
        "GET",
        "/metrics",
        &[
            viewer,
            "Accept: application/openmetrics-text; version=1.0.0".into(),
        ],
        b"",
    );
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(
        open.header("content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let search = |query: &str| -> Vec<serde_json::Value> {
        let r = agent.call(
            "GET",
            &format!("/v1/hub/packages?{query}"),
            Some("viewer"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["packages"].as_array().unwrap().clone()
    };
    let all = search("");
    let faults = search("q=pause&kind=fault");
    assert!(
        faults.len() < all.len(),
        "{} of {}",
        faults.len(),
        all.len()
    );
    assert!(
        faults.iter().any(|p| p["name"] == "process-pause"),
        "{faults:?}"
    );
    assert!(faults.iter().all(|p| p["kind"] == "fault"), "{faults:?}");
    assert!(
        search("q=pause&kind=probe")
            .iter()
            .all(|p| p["name"] != "process-pause"),
        "a probe search listed a fault"
    );
    let one = agent.call(
        "GET",
        "/v1/hub/packages/process-pause",
        Some("viewer"),
        None,
    );
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        one.json()["resolves_to"]["hub"],
        "faultline",
        "{}",
        one.body
    );
    let missing = agent.call(
        "GET",
        "/v1/hub/packages/no-such-package",
        Some("viewer"),
        None,
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    let pulled = agent.call(
        "POST",
        "/v1/hub/pull",
        Some("runner"),
        Some(r#"{"reference": "process-pause"}"#),
    );
    assert_eq!(pulled.status, 200, "{}", pulled.body);
    let p = pulled.json();
    assert!(p["digest"].as_str().unwrap().starts_with("sha256:"), "{p}");
    assert!(p["bytes"].as_u64().unwrap() > 1000, "{p}");
    assert!(
        p["identity"].as_str().unwrap().contains("process-pause"),
        "{p}"
    );
}
