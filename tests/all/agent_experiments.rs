//! The agent's experiment manager called directly (no HTTP): real processes paused and
//! resumed, a real TCP service probed, the bundled hub, a real SQLite history, the metrics'
//! real text exposition.

use faultline::agent::auth::{Principal, Role};
use faultline::agent::experiments::{ExperimentError, Experiments, StartRequest};
use faultline::agent::metrics::Metrics;
use faultline::experiment::engine::Options;
use faultline::experiment::record::{FaultStatus, Record, Status};
use faultline::experiment::store::{Store, history_path};
use faultline::hub::{Hub, HubConfig};
use faultline_tests::{DemoService, Sleeper, privileged};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

/// One lane: an optional wait, then a pause of the target for `DURATION`; an edge probe on
/// the service.
const EXPERIMENT: &str = r#"
apiVersion: faultline/v1
kind: Experiment
name: agent pause
TEAM
lanes:
  - name: main
    steps:
      - wait: 300ms
      - name: pause
        fault: process-pause@^0.1
        duration: DURATION
        targets: { pids: [PID] }
probes:
  - name: answers
    probe: tcp-probe@^0.1
    params: { host: "127.0.0.1", port: PORT }
    mode: edge
"#;

fn principal(name: &str, role: Role, team: &str) -> Principal {
    Principal {
        name: name.into(),
        role,
        team: team.into(),
    }
}

/// A state directory, a process to pause, a service to probe, the bundled hub synced once.
struct Setup {
    dir: tempfile::TempDir,
    target: Sleeper,
    service: DemoService,
    hub: Option<Arc<Hub>>,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let hub = faultline::hub::open_hub(hub_config(dir.path()))
            .await
            .map(|(h, _)| Arc::new(h))
            .unwrap();
        Setup {
            dir,
            target: Sleeper::start(),
            service: DemoService::start(BIN),
            hub: Some(hub),
        }
    }

    fn options(&self) -> Options {
        let policy = faultline::policy::Policy::parse(&format!(
            "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n\n[[grant]]\ncomponent = \"tcp-probe@^0.1\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [\"{}\"] }}\n",
            self.target.pid(),
            self.service.port
        ))
        .unwrap();
        Options {
            state_dir: self.dir.path().to_path_buf(),
            hub: hub_config(self.dir.path()),
            policy,
            trusted_roots: Vec::new(),
            memory_limit: 64 << 20,
            call_timeout: Duration::from_secs(10),
        }
    }

    /// A manager on this state directory's history.
    fn manager(&self, metrics: Arc<Metrics>) -> Experiments {
        let store = Store::open(&history_path(self.dir.path())).unwrap();
        Experiments::new(self.options(), store, metrics)
    }

    /// The experiment, for `team` (none when `None`), pausing for `duration`.
    fn experiment(&self, team: Option<&str>, duration: &str) -> String {
        EXPERIMENT
            .replace(
                "TEAM",
                &team.map(|t| format!("team: {t}")).unwrap_or_default(),
            )
            .replace("DURATION", duration)
            .replace("PID", &self.target.pid().to_string())
            .replace("PORT", &self.service.port.to_string())
    }

    fn request(&self, text: String, lease: Option<Duration>, by: Principal) -> StartRequest {
        StartRequest {
            text,
            file: "agent-pause.yaml".into(),
            lease,
            by,
        }
    }

    /// Waits (up to 30 s) until the target is in `state`.
    async fn target_becomes(&self, state: char) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if faultline_tests::proc_state(self.target.pid()) == state {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// The bundled hub, its cache in the test's directory (never the user's).
fn hub_config(dir: &Path) -> HubConfig {
    HubConfig {
        cache_dir: Some(dir.join("hub-cache")),
        ..HubConfig::default()
    }
}

/// Polls `get` until the record is final and the manager has let go of the run.
async fn final_record(manager: &Experiments, id: &str, by: &Principal) -> Record {
    let start = Instant::now();
    loop {
        let r = manager.get(id, by).await.unwrap();
        if r.status.is_final() && manager.running() == 0 {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_lease_stops_the_run_and_resumes_the_process_within_a_second() {
    if !privileged("a_lapsed_lease_stops_the_run_and_resumes_the_process_within_a_second") {
        return;
    }
    let s = Setup::new().await;
    let manager = s.manager(Arc::new(Metrics::new()));
    let admin = principal("ops", Role::Admin, "red");
    let lease = Duration::from_secs(2);
    let (id, checked) = manager
        .start(
            s.request(s.experiment(None, "60s"), Some(lease), admin.clone()),
            s.hub.clone(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        checked.plan.iter().any(|l| l.contains("process-pause")),
        "{checked:?}"
    );
    assert!(s.target_becomes('T').await, "never paused");
    // No heartbeat: the run stops when the lease lapses, and the process runs again.
    assert!(s.target_becomes('S').await, "never resumed");
    let resumed = started.elapsed();
    assert!(
        resumed >= lease && resumed <= lease + Duration::from_secs(1),
        "resumed after {resumed:?}, lease {lease:?}"
    );
    eprintln!("lease {lease:?}: the process ran again {resumed:?} after the start");
    let r = final_record(&manager, &id, &admin).await;
    assert_eq!(r.status, Status::Stopped, "{r:?}");
    assert!(r.reason.as_deref().unwrap_or("").contains("lease"), "{r:?}");
    assert_eq!(r.faults[0].status, FaultStatus::Stopped, "{r:?}");
    assert_eq!(r.started_by.as_deref(), Some("ops"));
    assert_eq!(s.target.state(), 'S');
    // Ended: nothing to heartbeat.
    assert!(matches!(
        manager.heartbeat(&id, &admin),
        Err(ExperimentError::Ended(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_keep_a_leased_run_going_to_its_end() {
    if !privileged("heartbeats_keep_a_leased_run_going_to_its_end") {
        return;
    }
    let s = Setup::new().await;
    let manager = s.manager(Arc::new(Metrics::new()));
    let runner = principal("ci", Role::Runner, "red");
    let lease = Duration::from_secs(1);
    let (id, _) = manager
        .start(
            s.request(s.experiment(Some("red"), "3s"), Some(lease), runner.clone()),
            s.hub.clone(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let r = loop {
        manager.heartbeat(&id, &runner).ok();
        let r = manager.get(&id, &runner).await.unwrap();
        if r.status.is_final() {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Three times the lease, and it ran its course.
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(r.status, Status::Completed, "{r:?}");
    assert_eq!(r.faults[0].status, FaultStatus::Completed, "{r:?}");
    assert_eq!(r.team.as_deref(), Some("red"));
    assert_eq!(s.target.state(), 'S');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_answers_with_the_final_record_and_stop_all_refuses_new_runs() {
    if !privileged("stop_answers_with_the_final_record_and_stop_all_refuses_new_runs") {
        return;
    }
    let s = Setup::new().await;
    let manager = s.manager(Arc::new(Metrics::new()));
    let runner = principal("ci", Role::Runner, "red");
    let text = s.experiment(Some("red"), "60s");
    let (id, _) = manager
        .start(s.request(text.clone(), None, runner.clone()), s.hub.clone())
        .await
        .unwrap();
    assert!(s.target_becomes('T').await, "never paused");
    let asked = Instant::now();
    let r = manager.stop(&id, &runner).await.unwrap();
    let took = asked.elapsed();
    eprintln!("stop answered with the final record after {took:?}");
    // Answered once reverted: the process runs already.
    assert_eq!(faultline_tests::proc_state(s.target.pid()), 'S');
    assert_eq!(r.status, Status::Stopped, "{r:?}");
    assert_eq!(r.end_state.map(|e| e.as_str()), Some("CANCELED"), "{r:?}");
    assert_eq!(r.faults[0].status, FaultStatus::Stopped, "{r:?}");
    assert!(r.faults[0].targets[0].reverted_ms.is_some(), "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(matches!(
        manager.stop(&id, &runner).await,
        Err(ExperimentError::Ended(_))
    ));

    // An emergency stop ends what runs and refuses what comes, until accepted again.
    let (id, _) = manager
        .start(s.request(text.clone(), None, runner.clone()), s.hub.clone())
        .await
        .unwrap();
    assert!(s.target_becomes('T').await, "never paused");
    assert_eq!(manager.stop_all("game day is over").await.stopped, 1);
    assert_eq!(faultline_tests::proc_state(s.target.pid()), 'S');
    let r = manager.get(&id, &runner).await.unwrap();
    assert_eq!(r.status, Status::Stopped, "{r:?}");
    assert!(
        r.reason.as_deref().unwrap_or("").contains("emergency"),
        "{r:?}"
    );
    match manager
        .start(s.request(text.clone(), None, runner.clone()), s.hub.clone())
        .await
    {
        Err(ExperimentError::Stopped(why)) => assert!(why.contains("game day is over"), "{why}"),
        other => panic!("{:?}", other.map(|(id, _)| id)),
    }
    assert_eq!(manager.running(), 0);
    assert_eq!(s.target.state(), 'S', "nothing was injected");
    manager.accept();
    let (id, _) = manager
        .start(s.request(text, None, runner.clone()), s.hub.clone())
        .await
        .unwrap();
    assert!(s.target_becomes('T').await, "never paused");
    manager.stop(&id, &runner).await.unwrap();
    assert_eq!(s.target.state(), 'S');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_acts_only_for_its_team() {
    if !privileged("a_runner_acts_only_for_its_team") {
        return;
    }
    let s = Setup::new().await;
    let manager = s.manager(Arc::new(Metrics::new()));
    let (red, blue) = (
        principal("red-ci", Role::Runner, "red"),
        principal("blue-ci", Role::Runner, "blue"),
    );
    let refused = |r: Result<(String, _), ExperimentError>| match r {
        Err(ExperimentError::Forbidden(why)) => why,
        other => panic!("not refused: {:?}", other.map(|(id, _)| id)),
    };
    let why = refused(
        manager
            .start(
                s.request(s.experiment(Some("red"), "60s"), None, blue.clone()),
                s.hub.clone(),
            )
            .await,
    );
    assert!(
        why.contains("team blue") && why.contains("team red") && why.contains("blue-ci"),
        "{why}"
    );
    let why = refused(
        manager
            .start(
                s.request(s.experiment(None, "60s"), None, red.clone()),
                s.hub.clone(),
            )
            .await,
    );
    assert!(
        why.contains("names no team") && why.contains("admin"),
        "{why}"
    );
    let viewer = principal("dash", Role::Viewer, "red");
    let why = refused(
        manager
            .start(
                s.request(s.experiment(Some("red"), "60s"), None, viewer),
                s.hub.clone(),
            )
            .await,
    );
    assert!(why.contains("viewer"), "{why}");
    // Nothing was paused, nothing is in flight or in the history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.target.state(), 'S');
    assert_eq!(manager.running(), 0);
    let admin = principal("ops", Role::Admin, "ops");
    assert!(manager.list(100, &admin).await.unwrap().is_empty());

    // Red's run: red reads and stops it; blue neither sees nor touches it.
    let (id, _) = manager
        .start(
            s.request(s.experiment(Some("red"), "60s"), None, red.clone()),
            s.hub.clone(),
        )
        .await
        .unwrap();
    assert!(s.target_becomes('T').await, "never paused");
    assert!(matches!(
        manager.heartbeat(&id, &blue),
        Err(ExperimentError::Forbidden(_))
    ));
    assert!(matches!(
        manager.stop(&id, &blue).await,
        Err(ExperimentError::Forbidden(_))
    ));
    assert!(matches!(
        manager.get(&id, &blue).await,
        Err(ExperimentError::Forbidden(_))
    ));
    assert!(manager.live(&id, &blue).is_err());
    assert!(manager.list(100, &blue).await.unwrap().is_empty());
    assert_eq!(s.target.state(), 'T', "blue's stop did nothing");
    let listed = manager.list(100, &red).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].status),
        (id.as_str(), Status::Running)
    );
    assert_eq!(manager.list(100, &admin).await.unwrap().len(), 1);
    manager.stop(&id, &red).await.unwrap();
    assert_eq!(s.target.state(), 'S');
    assert!(matches!(
        manager.get("01NOSUCHRUN0000000000000000", &red).await,
        Err(ExperimentError::NotFound(_))
    ));
    assert!(matches!(
        manager.get("../../etc/passwd", &red).await,
        Err(ExperimentError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_is_watched_live_counted_and_read_back_by_a_new_manager() {
    if !privileged("a_run_is_watched_live_counted_and_read_back_by_a_new_manager") {
        return;
    }
    let s = Setup::new().await;
    let metrics = Arc::new(Metrics::new());
    let manager = s.manager(metrics.clone());
    let runner = principal("ci", Role::Runner, "red");
    let (id, _) = manager
        .start(
            s.request(s.experiment(Some("red"), "1500ms"), None, runner.clone()),
            s.hub.clone(),
        )
        .await
        .unwrap();
    let mut live = manager.live(&id, &runner).unwrap().expect("running");
    // The record as it changes: the fault pending, running, then completed; the log as it
    // comes.
    let mut seen = vec![live.record.borrow_and_update().faults[0].status];
    let mut lines = Vec::new();
    loop {
        tokio::select! {
            changed = live.record.changed() => {
                let status = live.record.borrow_and_update().faults[0].status;
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                if changed.is_err() || live.record.borrow().status.is_final() {
                    break;
                }
            }
            line = live.log.recv() => {
                if let Ok(line) = line {
                    lines.push(line.message);
                }
            }
        }
    }
    let last = live.record.borrow().clone();
    assert_eq!(
        seen,
        [
            FaultStatus::Pending,
            FaultStatus::Running,
            FaultStatus::Completed
        ],
        "{last:?}"
    );
    assert_eq!(last.status, Status::Completed, "{last:?}");
    assert!(lines.iter().any(|l| l.contains("injecting")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("answers passed")),
        "{lines:?}"
    );
    // Wait until the manager has let go of it (the final record is in the history).
    let start = Instant::now();
    while manager.running() > 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(manager.live(&id, &runner).unwrap().is_none());

    // The counters after exactly one run: one fault target injected and reverted, two probe
    // checks (before and after) passed, two components loaded.
    let text = metrics.encode();
    let m = samples(&text);
    for (key, want) in [
        ("faultline_experiments_total{end_state=\"COMPLETED\"}", 1.0),
        ("faultline_experiments_running", 0.0),
        ("faultline_faults_injected_total", 1.0),
        ("faultline_faults_reverted_total", 1.0),
        ("faultline_revert_failures_total", 0.0),
        ("faultline_probe_checks_total{verdict=\"passed\"}", 2.0),
        (
            "faultline_component_load_seconds_count{kind=\"fault\"}",
            1.0,
        ),
        (
            "faultline_component_load_seconds_count{kind=\"probe\"}",
            1.0,
        ),
        ("faultline_revert_seconds_count", 1.0),
        ("faultline_emergency_stop", 0.0),
    ] {
        assert_eq!(m.get(key), Some(&want), "{key} in\n{text}");
    }
    assert!(
        !m.contains_key("faultline_probe_checks_total{verdict=\"failed\"}"),
        "{text}"
    );

    // A new manager on the same history reads it all back from the SQLite file.
    drop(manager);
    let again = s.manager(Arc::new(Metrics::new()));
    let listed = again.list(10, &runner).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].status,
            listed[0].team.as_deref()
        ),
        (id.as_str(), Status::Completed, Some("red"))
    );
    assert!(
        again
            .list(10, &principal("b", Role::Viewer, "blue"))
            .await
            .unwrap()
            .is_empty()
    );
    let stored = again.get(&id, &runner).await.unwrap();
    assert_eq!(stored, last);
    let log = again.log(&id, &runner).await.unwrap();
    assert!(
        log.iter().any(|l| l.message.contains("injecting")),
        "{log:?}"
    );
    assert!(log.len() >= lines.len(), "{} < {}", log.len(), lines.len());
    assert!(matches!(
        again.log(&id, &principal("b", Role::Viewer, "blue")).await,
        Err(ExperimentError::Forbidden(_))
    ));
}

/// Serves `metrics` at `GET /metrics` on loopback to requests bearing `token` (401 to any
/// other), until dropped; counts the scrapes it answered.
struct MetricsServer {
    addr: String,
    scrapes: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    fn start(metrics: Arc<Metrics>, token: &str) -> MetricsServer {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scrapes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, stopping, bearer) = (
            scrapes.clone(),
            stop.clone(),
            format!("authorization: bearer {}", token.to_ascii_lowercase()),
        );
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let reply = if head.lines().any(|l| l.trim() == bearer) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = metrics.encode();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        faultline::agent::metrics::CONTENT_TYPE,
                        body.len()
                    )
                } else {
                    let body = "{\"error\":\"a bearer token is needed\"}";
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = s.write_all(reply.as_bytes());
            }
        });
        MetricsServer {
            addr,
            scrapes,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_the_counters_with_a_bearer_token() {
    let test = "a_real_prometheus_scrapes_the_counters_with_a_bearer_token";
    if !privileged(test) {
        return;
    }
    let s = Setup::new().await;
    let metrics = Arc::new(Metrics::new());
    let manager = s.manager(metrics.clone());
    let admin = principal("ops", Role::Admin, "ops");
    let (id, _) = manager
        .start(
            s.request(s.experiment(None, "300ms"), None, admin.clone()),
            s.hub.clone(),
        )
        .await
        .unwrap();
    let r = final_record(&manager, &id, &admin).await;
    assert_eq!(r.status, Status::Completed, "{r:?}");
    let token = "s3cret-Token-42";
    let server = MetricsServer::start(metrics.clone(), token);
    // Without the token: refused, nothing served.
    let refused = faultline_tests::prometheus::get(&server.addr, "/metrics").unwrap_or_default();
    assert!(refused.contains("bearer token"), "{refused}");
    assert_eq!(server.scrapes.load(std::sync::atomic::Ordering::SeqCst), 0);
    let jobs = format!(
        "  - job_name: faultline\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['{}']\n",
        server.addr
    );
    let Some(prom) = faultline_tests::prometheus::Prometheus::start_with(test, &jobs) else {
        return;
    };
    let start = Instant::now();
    let found = loop {
        let body = faultline_tests::prometheus::get(
            &prom.addr,
            "/api/v1/query?query=faultline_experiments_total",
        )
        .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(first) = v["data"]["result"].as_array().and_then(|r| r.first()) {
            break first.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no sample after 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "prometheus had faultline_experiments_total {:?} after {:?}",
        found["value"],
        start.elapsed()
    );
    assert_eq!(found["metric"]["end_state"], "COMPLETED", "{found}");
    assert_eq!(found["metric"]["job"], "faultline", "{found}");
    assert_eq!(found["value"][1], "1", "{found}");
    assert!(server.scrapes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}
