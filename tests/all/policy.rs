//! The policy as the capabilities enforce it, against real processes and threads: operations
//! denied by default, the agent's threads never in scope, and `faultline policy explain`
//! through the real binary.

use faultline::capability::process::linux;
use faultline::capability::{Backends, CapError, Context};
use faultline::contract::process::{Selector, Signal, StressKind, StressSpec};
use faultline::host::{FaultPlugin, Plugin};
use faultline::journal::Journal;
use faultline::policy::{Identity, Policy};
use faultline_tests::{Sleeper, components as c, host, wasm};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

/// `process-pause`'s version as its sources build it.
fn pause_version() -> semver::Version {
    let release = faultline_tests::components::release("process-pause");
    release.split('@').nth(1).unwrap().parse().unwrap()
}

/// A capability context for `process-pause` (its version as built) from a verified hub, under `policy`: the
/// test process is its agent.
fn context(policy: &str, dir: &std::path::Path) -> Context {
    let policy = Policy::parse(policy).unwrap();
    let who = Identity::from_hub(
        "test",
        "process-pause",
        pause_version(),
        &format!("sha256:{}", "b".repeat(64)),
    );
    Context {
        execution: "ex-policy".to_string(),
        grants: Arc::new(policy.grants_for(&who)),
        journal: Arc::new(Journal::create(dir).unwrap()),
        backends: Arc::new(Backends::new(PathBuf::from(env!(
            "CARGO_BIN_EXE_stress-worker"
        )))),
        log: faultline::host::tracing_log(),
        changes: Vec::new(),
        gate: Arc::new(tokio::sync::RwLock::new(())),
        deadline: None,
    }
}

/// The bundled-for-tests `process-pause`, loaded as its hub release.
async fn load_pause(host: &faultline::host::Host, policy: &Policy) -> FaultPlugin {
    use sha2::Digest;
    let bytes = wasm(c::PROCESS_PAUSE);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let who = Identity::from_hub("test", "process-pause", pause_version(), &digest);
    match host.load(&bytes, &who, policy).await.unwrap() {
        Plugin::Fault(f) => f,
        Plugin::Probe(_) => panic!("process-pause loaded as a probe"),
    }
}

fn denial<T: std::fmt::Debug>(r: Result<T, CapError>) -> String {
    match r {
        Err(CapError::Denied(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// A thread of this process that counts while it runs; its tid, the counter, the stop flag.
struct Counter {
    tid: u32,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    fn start() -> Counter {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (c, s) = (count.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("flt-counter".to_string())
            .spawn(move || {
                tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
                while !s.load(Ordering::Relaxed) {
                    c.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        Counter {
            tid,
            count,
            stop,
            handle: Some(handle),
        }
    }

    /// Whether it is still counting: the count moves within a second.
    fn running(&self) -> bool {
        let before = self.count.load(Ordering::Relaxed);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            if self.count.load(Ordering::Relaxed) > before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn a_thread_of_the_agent_is_never_in_scope_even_when_granted_by_tid() {
    let thread = Counter::start();
    let me = std::process::id();
    assert_ne!(thread.tid, me);
    let dir = tempfile::tempdir().unwrap();
    // Granted by tid, by its name and by every signal: still refused, because stopping one thread
    // id stops the whole thread group, the agent.
    let mut cx = context(
        &format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], names = [\"flt-counter\"], signals = [\"stop\", \"kill\"] }}\n",
            thread.tid
        ),
        dir.path(),
    );
    let expected = format!(
        "process {} is a thread of the agent (pid {me}), never in scope",
        thread.tid
    );
    assert_eq!(
        denial(cx.signal_process(thread.tid, Signal::Stop)),
        expected
    );
    assert_eq!(
        denial(cx.find_processes(&Selector::Pid(thread.tid))),
        expected
    );
    // A name search does not list it either (`/proc` lists processes, not threads).
    let found = cx
        .find_processes(&Selector::Name("flt-counter".to_string()))
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    assert!(thread.running(), "the agent's thread was stopped");
    assert_ne!(faultline_tests::proc_state(me), 'T');
    assert!(cx.journal.outstanding(None).is_empty());
}

#[tokio::test]
async fn the_pause_fault_cannot_stop_a_thread_of_the_agent() {
    let thread = Counter::start();
    let (host, _d) = host();
    let policy = Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n",
        thread.tid
    ))
    .unwrap();
    let plugin = load_pause(&host, &policy).await;
    let params = format!(r#"{{"pid": {}}}"#, thread.tid);
    let e = plugin
        .inject(&host, "ex-thread", &params, Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "process {} is a thread of the agent (pid {}), never in scope",
            thread.tid,
            std::process::id()
        )),
        "{e}"
    );
    assert!(!e.contains("target gone"), "{e}");
    assert!(thread.running());
    assert!(host.journal().outstanding(None).is_empty());
}

#[test]
fn a_signal_no_covering_grant_lists_is_denied_naming_the_signal_and_rule() {
    let target = Sleeper::start();
    let other = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    // Grant 2 allows SIGKILL, but only for `other`: operations pair with the processes of
    // the same grant.
    let mut cx = context(
        &format!(
            "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n\
             [[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"kill\"] }}\n\
             [[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}] }}\n",
            target.pid(),
            other.pid(),
            other.pid()
        ),
        dir.path(),
    );
    assert_eq!(
        denial(cx.signal_process(target.pid(), Signal::Kill)),
        format!(
            "SIGKILL is not among the signals granted to {} (grant 1 (process-pause@^0.1))",
            faultline_tests::components::release("process-pause")
        )
    );
    assert_eq!(
        denial(cx.signal_process(other.pid(), Signal::Stop)),
        format!(
            "SIGSTOP is not among the signals granted to {} (grant 2 (*), grant 3 (*))",
            faultline_tests::components::release("process-pause")
        )
    );
    assert_eq!(target.state(), 'S');
    assert_eq!(other.state(), 'S');
    // What is granted works, and the journal's own undo (SIGCONT) needs no grant.
    let change = cx.signal_process(target.pid(), Signal::Stop).unwrap();
    assert!(change.is_some());
    assert_eq!(target.state(), 'T');
    for entry in cx.journal.outstanding(None) {
        cx.backends.undo_json(&entry.inverse).unwrap();
        cx.journal.undone(entry.id).unwrap();
    }
    assert_eq!(target.state(), 'S');
}

#[test]
fn a_stress_kind_no_grant_lists_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cx = context(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = { stress = [\"cpu\"] }\n",
        dir.path(),
    );
    let spec = StressSpec {
        kind: StressKind::Memory,
        workers: 1,
        load_percent: 10,
        memory_bytes: 1 << 20,
        cgroup: None,
    };
    assert_eq!(
        denial(cx.start_stress_workers(spec)),
        format!(
            "memory stress is not among the stress kinds granted to {} (grant 1 (*))",
            faultline_tests::components::release("process-pause")
        )
    );
    assert!(cx.journal.outstanding(None).is_empty());
}

/// `sleep 600` whose command line starts with a name of its own.
struct Marked {
    child: std::process::Child,
    marker: String,
}

impl Marked {
    fn start() -> Marked {
        use std::os::unix::process::CommandExt;
        let marker = format!("flt-explain-{}", std::process::id());
        let child = Command::new("sleep")
            .arg0(&marker)
            .arg("600")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until exec has happened and /proc shows the new command line.
        let start = Instant::now();
        while linux::info(child.id()).is_none_or(|p| p.cmdline.first() != Some(&marker))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Marked { child, marker }
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn explain(policy: &std::path::Path, json: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["policy", "explain"]).arg(policy);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn policy_explain_lists_the_processes_a_grant_reaches_and_why() {
    let target = Marked::start();
    let pid = target.child.id();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ cmdlines = [\"^{} 600$\"], signals = [\"stop\"] }}\n\
             [[grant]]\ncomponent = \"*\"\ncapabilities = [\"network\"]\nnetwork = {{ namespaces = [\"host\"], interfaces = [\"l*\"], ports = [\"80\"] }}\n\
             [[grant]]\ncomponent = \"sha256:{}\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [1] }}\n",
            target.marker,
            "c".repeat(64)
        ),
    )
    .unwrap();
    let (code, text) = explain(&path, false);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("grant 1 (process-pause@^0.1): applies to hub releases named process-pause in range ^0.1"),
        "{text}"
    );
    assert!(text.contains("processes in scope now: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "pid {pid} sleep user root matched by cmdlines = [\"^{} 600$\"]",
            target.marker
        )),
        "{text}"
    );
    assert!(text.contains("signals: SIGSTOP"), "{text}");
    assert!(text.contains("stress: none"), "{text}");
    assert!(text.contains("    host: lo"), "{text}");
    assert!(text.contains("destinations any, ports 80"), "{text}");
    // Pid 1 is named by grant 3 but shown as excluded.
    assert!(
        text.contains("named by the scope but never in scope: 1"),
        "{text}"
    );
    assert!(text.contains("pid 1 is never in scope"), "{text}");

    let (code, json) = explain(&path, true);
    assert_eq!(code, Some(0), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let matched = &v["grants"][0]["processes"]["matched"];
    assert_eq!(matched.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(matched[0]["pid"], pid);
    assert_eq!(matched[0]["matched_by"]["criterion"], "cmdline");
    assert_eq!(
        v["grants"][1]["network"]["destinations"],
        serde_json::Value::Null
    );
    assert_eq!(v["grants"][2]["processes"]["excluded"][0]["pid"], 1);
}

#[test]
fn policy_explain_refuses_a_bad_policy_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"network\"]\n[[grant]]\ncomponent = \"*\"\ncapabilities = [\"network\"]\nnetwork = { destinations = [\"10.0.0.0/8\", \"10.0.0.0/33\"] }\n",
    )
    .unwrap();
    let (code, text) = explain(&path, false);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(r#"grant 2: network.destinations[1]: "10.0.0.0/33" is not a CIDR"#),
        "{text}"
    );
}
