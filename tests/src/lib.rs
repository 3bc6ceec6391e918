//! Test support for Faultline's integration tests: paths of the guest components built by
//! `build.rs`, and guards for privileged tests.

// Test support: a panic is how a test (or its build) fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

/// Paths of the guest components `build.rs` built from source.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));

    /// `name@version` of a published fault or probe as its sources build it.
    pub fn release(name: &str) -> String {
        let version = VERSIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} is not a published fault or probe"));
        format!("{name}@{version}")
    }
}

/// Whether privileged tests may run here. When not root, prints the skip reason and returns
/// false, unless `FAULTLINE_REQUIRE_PRIVILEGED=1`, where a skip is a failure.
pub fn privileged(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let reason = format!("skipping {test}: needs root (network namespaces, cgroups, tc, nft)");
    assert!(
        std::env::var("FAULTLINE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{reason}, and FAULTLINE_REQUIRE_PRIVILEGED=1 forbids skipping"
    );
    eprintln!("{reason}");
    false
}

/// Records that `test` skips part or all of itself because this machine lacks `feature`:
/// printed, and appended to `$FAULTLINE_SKIP_LOG` when set, so `.ci/run` lists every such skip
/// at the end (libtest hides a passing test's output).
pub fn skip(test: &str, feature: &str) {
    let line = format!("skipping {test}: this machine lacks {feature}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("FAULTLINE_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A child process (`sleep`) killed when dropped, even when the test fails.
pub struct Sleeper(pub std::process::Child);

impl Sleeper {
    /// Starts `sleep 300`.
    pub fn start() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("300")
                .spawn()
                .expect("spawn sleep"),
        )
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its settled one-letter state from `/proc/<pid>/stat`: `sleep` is only transiently
    /// running (`R`, e.g. just after SIGCONT), so this waits up to 2 s for it to settle.
    pub fn state(&self) -> char {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let state = proc_state(self.pid());
            if state != 'R' || std::time::Instant::now() > deadline {
                return state;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `pid` is in `state` (from `/proc/<pid>/stat`, polled every 10 ms), up to
/// `limit`; whether it got there. `sleep` passes through `R` after SIGCONT, so a caller waiting
/// for `S` sees it settle.
pub fn wait_state(pid: u32, state: char, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if proc_state(pid) == state {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The one-letter state of a process from `/proc/<pid>/stat` (`?` when it is gone).
pub fn proc_state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

/// A policy granting `process` on exactly these pids to every component.
pub fn policy_for_pids(pids: &[u32]) -> faultline::policy::Policy {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    faultline::policy::Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\", \"cont\", \"kill\", \"term\", \"int\", \"quit\", \"hup\"] }}\n",
        list.join(", ")
    ))
    .expect("policy")
}

/// A host with its own state directory (kept alive by the returned guard).
pub fn host() -> (faultline::host::Host, tempfile::TempDir) {
    host_with(|_| ())
}

/// A host as [`host`] makes it, with `configure` applied to its configuration first (a real
/// `worker_exe` for stress workers, longer deadlines).
pub fn host_with(
    configure: impl FnOnce(&mut faultline::host::HostConfig),
) -> (faultline::host::Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = faultline::host::HostConfig::new(dir.path().to_path_buf());
    config.call_timeout = std::time::Duration::from_millis(1500);
    config.revert_timeout = std::time::Duration::from_millis(1500);
    config.memory_limit = 32 << 20;
    configure(&mut config);
    let host = faultline::host::Host::new(config, faultline::host::tracing_log()).expect("host");
    (host, dir)
}

/// Reads a component built by `build.rs`.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}
pub mod agent;
pub mod cgroups;
pub mod dns;
/// A loopback HTTP server for hub tests.
pub mod hubserver;
pub mod netns;
/// A loopback HTTP(S) server for the probe tests.
pub mod probeserver;
/// A real Prometheus server on loopback for the prometheus-probe tests.
pub mod prometheus;
/// Snapshots, a seeded random source and an HTTP client for the recovery tests.
pub mod torture;

/// Who these bytes are: the bundled hub's release with their digest (as a verified pull would
/// say), or a local file known by its digest alone.
pub fn identity(bytes: &[u8]) -> faultline::policy::Identity {
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../hub-index.json");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("hub-index.json"))
            .expect("hub index");
    for package in index["packages"].as_array().into_iter().flatten() {
        for release in package["versions"].as_array().into_iter().flatten() {
            if release["digest"] == digest.as_str() {
                return faultline::policy::Identity::from_hub(
                    index["hub"]["id"].as_str().expect("hub id"),
                    package["name"].as_str().expect("name"),
                    release["version"]
                        .as_str()
                        .expect("version")
                        .parse()
                        .expect("semver"),
                    &digest,
                );
            }
        }
    }
    faultline::policy::Identity::local(&digest)
}

/// Loads a fault as [`identity`] says who it is.
pub async fn load_fault(
    host: &faultline::host::Host,
    bytes: &[u8],
    policy: &faultline::policy::Policy,
) -> Result<faultline::host::FaultPlugin, faultline::host::LoadError> {
    host.load_fault(bytes, &identity(bytes), policy).await
}

/// Loads a probe as [`identity`] says who it is.
pub async fn load_probe(
    host: &faultline::host::Host,
    bytes: &[u8],
    policy: &faultline::policy::Policy,
) -> Result<faultline::host::ProbePlugin, faultline::host::LoadError> {
    host.load_probe(bytes, &identity(bytes), policy).await
}

/// A hub of test fixtures in `dir`: an index listing `fixture-misbehave` and the published
/// `process-pause`, and a config (`dir/faultline.toml`) that trusts it by saying
/// `required_signatures = 0` in so many words. Agents resolve fixtures by hub reference like any
/// other component. Returns the config file.
pub fn fixture_hub(dir: &std::path::Path) -> PathBuf {
    fixture_hub_of(
        dir,
        &[
            ("fixture-misbehave", components::MISBEHAVE, "process"),
            ("process-pause", components::PROCESS_PAUSE, "process"),
        ],
    )
}

/// The version `faults/<name>/Cargo.toml` builds (what a built published fault describes itself
/// as), or 0.1.0 for any other name (the test fixtures).
fn published_version(name: &str) -> String {
    let manifest = repo_root().join("faults").join(name).join("Cargo.toml");
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "0.1.0".to_string())
}

/// [`fixture_hub`] with these entries: (package name, component path, capability). The name is
/// what the index says, whatever the component describes itself as.
pub fn fixture_hub_of(dir: &std::path::Path, entries: &[(&str, &str, &str)]) -> PathBuf {
    use sha2::Digest as _;
    let hub = dir.join("fixture-hub");
    std::fs::create_dir_all(&hub).unwrap();
    let mut packages = Vec::new();
    for &(name, path, capability) in entries {
        let bytes = wasm(path);
        let version = published_version(name);
        let file = format!("{name}-{version}.wasm");
        std::fs::write(hub.join(&file), &bytes).unwrap();
        packages.push(serde_json::json!({
            "name": name,
            "kind": "fault",
            "description": format!("{name} for tests"),
            "categories": ["process"],
            "versions": [{
                "version": version,
                "digest": format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
                "size": bytes.len(),
                "urls": [file],
                "contract": "faultline:contract@0.1.1",
                "capabilities": [{"interface": "log"}, {"interface": "rollback"}, {"interface": capability}],
                "params_schema": {"type": "object"},
                "revertible": true
            }]
        }));
    }
    let now = std::time::SystemTime::now();
    let index = serde_json::json!({
        "schema_version": 1,
        "hub": {"id": "fixtures", "name": "Test fixtures"},
        "serial": 1,
        "generated": humantime::format_rfc3339_seconds(now - std::time::Duration::from_secs(60)).to_string(),
        "expires": humantime::format_rfc3339_seconds(now + std::time::Duration::from_secs(86_400)).to_string(),
        "runtime": "*",
        "packages": packages
    });
    std::fs::write(
        hub.join("hub-index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
    let config = dir.join("faultline.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nsources = [{:?}]\nrequired_signatures = 0\ncache_dir = {:?}\n",
            hub.join("hub-index.json").display().to_string(),
            dir.join("hub-cache").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Waits (up to 10 s) until the run behind `handle` has injected; panics with its event history
/// when it never does.
pub async fn injected(handle: &faultline::execution::Handle) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while handle.phase() != faultline::execution::Phase::Injected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never injected: {:?}",
            handle.history()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `faultline demo-service` (the demo's HTTP server on loopback) as a process of its own, so a
/// fault can pause it; killed when dropped.
pub struct DemoService {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl DemoService {
    /// Starts it from `bin` (a `faultline` binary) and reads the port it chose.
    pub fn start(bin: &str) -> DemoService {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(bin)
            .arg("demo-service")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start demo-service");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read demo-service");
        let port = line
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        DemoService { child, port }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
