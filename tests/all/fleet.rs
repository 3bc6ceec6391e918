//! Fleets: three real agents, each in a network namespace of its own (and a pid namespace of
//! its own, as if on a host of its own), each pausing a `sleep` of its own namespace with
//! process-pause, driven by `faultline --agent A,B,C run`. The command line or an agent is
//! killed mid-run; every target must be running again within the lease.
//!
//! The host side reaches each agent over a veth pair to its namespace (10.231.N.1 ↔
//! 10.231.N.2). Deleting the namespaces deletes the pairs; the host keeps nothing.

use faultline_tests::{privileged, proc_state};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");
const PORT: u16 = 7787;
/// The lease the command line holds with each agent.
const LEASE: Duration = Duration::from_secs(3);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Sixteen random bytes, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    hex::encode(bytes)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The tokens every agent of the test knows.
struct Tokens {
    dir: tempfile::TempDir,
    admin: String,
    runner: String,
    viewer: String,
    blue: String,
}

impl Tokens {
    fn new() -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens {
            dir,
            admin: random_token(),
            runner: random_token(),
            viewer: random_token(),
            blue: random_token(),
        };
        let mut text = String::new();
        for (name, role, team, token) in [
            ("ops", "admin", "red", &t.admin),
            ("red-ci", "runner", "red", &t.runner),
            ("red-dash", "viewer", "red", &t.viewer),
            ("blue-ci", "runner", "blue", &t.blue),
        ] {
            text.push_str(&format!(
                "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nteam = \"{team}\"\nsha256 = \"{}\"\n\n",
                hex::encode(Sha256::digest(token.as_bytes()))
            ));
        }
        let path = t.tokens_file();
        std::fs::write(&path, text).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        t
    }

    fn tokens_file(&self) -> PathBuf {
        self.dir.path().join("tokens.toml")
    }

    /// A private file holding `token`, for `--token-file`.
    fn file(&self, token: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join(format!("t-{}", &token[..8]));
        std::fs::write(&path, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

/// One agent in a network and pid namespace of its own, with a `sleep` of its own to pause.
struct NsAgent {
    netns: String,
    addr: String,
    dir: PathBuf,
    /// `unshare`, whose child `sh` is pid 1 of the agent's pid namespace; killing it (it has
    /// `--kill-child`) ends the namespace and everything in it.
    init: Child,
    /// `sh`, pid 1 of the namespace, in the host's numbering.
    sh: u32,
    /// The sleeper, in the host's numbering.
    target: u32,
    /// The agent, in the host's numbering.
    agent: u32,
    /// A restarted agent (`nsenter`), when there is one.
    restarted: Option<Child>,
}

/// The children of a process (every thread's).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl NsAgent {
    fn start(index: usize, tokens: &Tokens, warm_cache: &Path) -> NsAgent {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let netns = format!("flt-fleet-{}-{n}", std::process::id());
        let (host_if, peer_if) = (format!("flfh{}{n}", std::process::id() % 10000), "eth0");
        let subnet = 231;
        let host_addr = format!("10.{subnet}.{n}.1");
        let addr = format!("10.{subnet}.{n}.2");
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", peer_if, "netns", &netns,
        ]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_addr}/24"), "dev", &host_if]));
        run(Command::new("ip").args(["link", "set", &host_if, "up"]));
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{addr}/24"), "dev", peer_if],
            vec!["link", "set", peer_if, "up"],
        ] {
            run(Command::new("ip").args(["-n", &netns]).args(&args));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("fleet-{index}-"))
            .tempdir()
            .unwrap()
            .keep();
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        run(Command::new("cp")
            .arg("-r")
            .arg(warm_cache)
            .arg(state.join("cache")));
        std::fs::write(
            dir.join("agent.toml"),
            agent_toml(
                &addr,
                &tokens.tokens_file(),
                &dir.join("policy.toml"),
                index,
            ),
        )
        .unwrap();
        // In the namespace: the sleeper first (its pid goes into the policy), then the agent;
        // `sh` stays pid 1 so that the namespace outlives a killed agent.
        let script = format!(
            r#"sleep 300 &
printf '[[grant]]\ncomponent = "process-pause@^0.1"\ncapabilities = ["process"]\nprocess = {{ pids = [%s], signals = ["stop"] }}\n' $! > {dir}/policy.toml
{BIN} --state-dir {dir}/state agent --config {dir}/agent.toml > {dir}/agent.log 2>&1 &
wait"#,
            dir = dir.display()
        );
        let init = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let unshare = init.id();
        let sh = wait_for("the namespace's sh", Duration::from_secs(10), || {
            children(unshare).into_iter().find(|p| comm(*p) == "sh")
        });
        let (target, agent) =
            wait_for("the sleeper and the agent", Duration::from_secs(10), || {
                let kids = children(sh);
                let target = kids.iter().copied().find(|p| comm(*p) == "sleep")?;
                let agent = kids
                    .iter()
                    .copied()
                    .find(|p| comm(*p).starts_with("faultline"))?;
                Some((target, agent))
            });
        let me = NsAgent {
            netns,
            addr,
            dir,
            init,
            sh,
            target,
            agent,
            restarted: None,
        };
        me.wait_ready();
        me
    }

    fn url(&self) -> String {
        format!("http://{}:{PORT}", self.addr)
    }

    fn name(&self) -> String {
        format!("{}:{PORT}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(&self.addr, "/readyz", None).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline && !matches!(proc_state(self.agent), '?' | 'Z'),
                "agent {} not ready (it ended, or 60 s passed); its log:\n{}",
                self.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent again in the same namespaces (after a kill).
    fn restart(&mut self) {
        let child = Command::new("nsenter")
            .args([
                "--target",
                &self.sh.to_string(),
                "--pid",
                "--mount",
                "--net",
                BIN,
            ])
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("agent")
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nsenter = child.id();
        self.restarted = Some(child);
        self.agent = wait_for("the restarted agent", Duration::from_secs(10), || {
            children(nsenter)
                .into_iter()
                .find(|p| comm(*p).starts_with("faultline"))
        });
        self.wait_ready();
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        // The agent first, politely (it reverts), then the namespace's pid 1 and all in it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.agent as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(proc_state(self.agent), '?' | 'Z') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(c) = &mut self.restarted {
            let _ = c.wait();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.sh as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.init.kill();
        let _ = self.init.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent_toml(addr: &str, tokens: &Path, policy: &Path, index: usize) -> String {
    format!(
        r#"[agent]
listen = "{addr}:{PORT}"
insecure_plaintext = true
tokens = "{}"
policy = "{}"
labels = {{ zone = "{}", index = "{index}" }}
"#,
        tokens.display(),
        policy.display(),
        if index == 2 { "b" } else { "a" }
    )
}

/// One HTTP/1.1 GET over a plain TCP connection (bounded in time): the status and the body.
fn get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use std::io::Write as _;
    let sock: std::net::SocketAddr = format!("{addr}:{PORT}").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}:{PORT}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// `faultline --agent … ARGS` with `token`, its output.
fn cli(agents: &[&NsAgent], token_file: &Path, args: &[&str]) -> Command {
    let urls: Vec<String> = agents.iter().map(|a| a.url()).collect();
    let mut cmd = Command::new(BIN);
    cmd.arg("--agent")
        .arg(urls.join(","))
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("FAULTLINE_TOKEN")
        .env_remove("FAULTLINE_AGENT");
    cmd
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A command line run in the background, its output collected as it comes.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The execution id each agent printed (`agent NAME: execution ID`).
    fn ids(&self, agents: &[&NsAgent]) -> Vec<String> {
        let text = self.text();
        agents
            .iter()
            .map(|a| {
                let prefix = format!("agent {}: execution ", a.name());
                text.lines()
                    .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
                    .unwrap_or_else(|| panic!("no execution id for {} in:\n{text}", a.name()))
            })
            .collect()
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the command line did not end in {limit:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn all_paused(agents: &[&NsAgent]) -> bool {
    agents.iter().all(|a| proc_state(a.target) == 'T')
}

fn experiment(dir: &Path) -> PathBuf {
    let path = dir.join("fleet.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: faultline/v1
kind: Experiment
name: fleet pause
team: red
lanes:
  - name: main
    steps:
      - name: pause
        fault: process-pause@^0.1
        duration: 60s
        targets: { names: [sleep] }
"#,
    )
    .unwrap();
    path
}

/// Compiles process-pause once into a cache every agent starts with (three compiles at once in
/// a debug build would take longer than a request may).
fn warm_cache(dir: &Path, file: &Path) -> PathBuf {
    let state = dir.join("warm");
    let sleeper = faultline_tests::Sleeper::start();
    let policy = dir.join("warm-policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n",
            sleeper.pid()
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(file)
        .unwrap()
        .replace("names: [sleep]", &format!("pids: [{}]", sleeper.pid()))
        .replace("team: red\n", "");
    let local = dir.join("warm.yaml");
    std::fs::write(&local, text).unwrap();
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["run", "--dry-run", "--policy"])
        .arg(&policy)
        .arg(&local)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    state.join("cache")
}

#[test]
fn three_agents_revert_within_the_lease_when_the_cli_or_an_agent_dies() {
    if !privileged("fleet") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new();
    let file = experiment(dir.path());
    let cache = warm_cache(dir.path(), &file);
    let mut fleet: Vec<NsAgent> = (0..3).map(|i| NsAgent::start(i, &tokens, &cache)).collect();
    let runner = tokens.file(&tokens.runner);
    let lease = format!("{}s", LEASE.as_secs());

    // 401 and 403: nothing starts, and the messages say why.
    {
        let agents: Vec<&NsAgent> = fleet.iter().collect();
        let bad = tokens.file(&random_token());
        let o = cli(&agents, &bad, &["run", "--lease", &lease])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", said(&o));
        assert!(said(&o).contains("refused the token (401"), "{}", said(&o));
        for token in [&tokens.viewer, &tokens.blue] {
            let o = cli(&agents, &tokens.file(token), &["run", "--lease", &lease])
                .arg(&file)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(2), "{}", said(&o));
            assert!(
                said(&o).contains("role or team may not do this (403"),
                "{}",
                said(&o)
            );
            assert!(!said(&o).contains(token.as_str()), "a token was printed");
        }
        assert!(agents.iter().all(|a| proc_state(a.target) == 'S'));
    }

    // (a) The command line is killed mid-run: every agent's lease lapses and it reverts.
    let ids_a = {
        let agents: Vec<&NsAgent> = fleet.iter().collect();
        let mut cmd = cli(&agents, &runner, &["run", "--lease", &lease]);
        cmd.arg(&file);
        let mut running = Running::start(cmd);
        wait_for(
            &format!("every target paused; the command said:\n{}", running.text()),
            Duration::from_secs(30),
            || all_paused(&agents).then_some(()),
        );
        let ids = running.ids(&agents);
        running.child.kill().unwrap();
        let died = Instant::now();
        running.child.wait().unwrap();
        wait_for(
            "every target running again",
            LEASE + Duration::from_secs(2),
            || {
                agents
                    .iter()
                    .all(|a| proc_state(a.target) == 'S')
                    .then_some(())
            },
        );
        let took = died.elapsed();
        eprintln!(
            "fleet: from the command line's death to every agent reverted: {took:?} (lease {LEASE:?})"
        );
        assert!(took <= LEASE + Duration::from_secs(2), "{took:?}");
        for (a, id) in agents.iter().zip(&ids) {
            let r = wait_for("the record ended", Duration::from_secs(5), || {
                let (_, body) = get(
                    &a.addr,
                    &format!("/v1/experiments/{id}"),
                    Some(&tokens.viewer),
                )?;
                let v: Value = serde_json::from_str(&body).ok()?;
                (v["status"] != "running").then_some(v)
            });
            assert!(
                r["reason"].as_str().unwrap_or("").contains("lease"),
                "{}: {r}",
                a.name()
            );
        }
        ids
    };

    // executions list and show through the command line, on every agent.
    {
        let agents: Vec<&NsAgent> = fleet.iter().collect();
        let viewer = tokens.file(&tokens.viewer);
        let o = cli(&agents, &viewer, &["executions", "list"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        for (a, id) in agents.iter().zip(&ids_a) {
            assert!(
                said(&o).contains(&format!("agent {}", a.name())),
                "{}",
                said(&o)
            );
            assert!(said(&o).contains(id.as_str()), "{}", said(&o));
        }
        let o = cli(
            &agents,
            &viewer,
            &["executions", "show", &ids_a[1], "--json"],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["id"], ids_a[1].as_str());
        assert_eq!(r["name"], "fleet pause");
        let o = cli(
            &agents,
            &viewer,
            &["executions", "show", "01NOSUCHEXECUTION"],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", said(&o));
        assert!(
            said(&o).contains("no execution 01NOSUCHEXECUTION on any of the 3 agents"),
            "{}",
            said(&o)
        );
        let o = cli(&agents, &viewer, &["executions", "log", &ids_a[0]])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        assert!(said(&o).contains("pause"), "{}", said(&o));
    }

    // (b) One agent is killed mid-run: the command line stops the other two and ends ERRORED
    // naming it; its own target is running again once it restarts and recovers its journal.
    {
        let agents: Vec<&NsAgent> = fleet.iter().collect();
        let mut cmd = cli(&agents, &runner, &["run", "--lease", &lease]);
        cmd.arg(&file);
        let mut running = Running::start(cmd);
        wait_for(
            &format!("every target paused; the command said:\n{}", running.text()),
            Duration::from_secs(30),
            || all_paused(&agents).then_some(()),
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agents[1].agent as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let killed = Instant::now();
        let code = running.wait(LEASE + Duration::from_secs(15));
        let exited = killed.elapsed();
        let text = running.text();
        assert_eq!(code, Some(4), "{text}");
        assert!(
            text.contains(&format!("agent {} dropped", agents[1].name())),
            "{text}"
        );
        for i in [0, 2] {
            assert_eq!(
                proc_state(agents[i].target),
                'S',
                "{}: {text}",
                agents[i].name()
            );
        }
        assert_eq!(
            proc_state(agents[1].target),
            'T',
            "nobody should have reverted it yet"
        );
        eprintln!(
            "fleet: an agent killed; the command line stopped the others and ended in {exited:?}"
        );
    }
    let dropped = Instant::now();
    fleet[1].restart();
    wait_for(
        "the dropped agent's target running again",
        Duration::from_secs(5),
        || (proc_state(fleet[1].target) == 'S').then_some(()),
    );
    eprintln!(
        "fleet: the restarted agent recovered its journal; target running {:?} after the restart began",
        dropped.elapsed()
    );

    // A remote emergency stop refuses new runs on every agent until it is cleared.
    {
        let agents: Vec<&NsAgent> = fleet.iter().collect();
        let admin = tokens.file(&tokens.admin);
        let o = cli(
            &agents,
            &runner,
            &["emergency-stop", "--reason", "fleet test"],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", said(&o));
        assert!(said(&o).contains("(403"), "{}", said(&o));
        let o = cli(
            &agents,
            &admin,
            &["emergency-stop", "--reason", "fleet test"],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        assert_eq!(
            said(&o).matches("emergency stop set").count(),
            3,
            "{}",
            said(&o)
        );
        let o = cli(&agents, &runner, &["run", "--lease", &lease])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", said(&o));
        assert!(agents.iter().all(|a| proc_state(a.target) == 'S'));
        let o = cli(&agents, &admin, &["emergency-stop", "--clear"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        assert_eq!(
            said(&o).matches("emergency stop cleared").count(),
            3,
            "{}",
            said(&o)
        );
    }

    let names: Vec<String> = fleet.iter().map(|a| a.netns.clone()).collect();
    fleet.clear();
    let left = String::from_utf8_lossy(&run(Command::new("ip").args(["netns", "list"])).stdout)
        .into_owned();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
    // A deleted namespace's veths go with it, but the kernel cleans up asynchronously.
    let ours = format!("flfh{}", std::process::id() % 10000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = String::from_utf8_lossy(&run(Command::new("ip").args(["-o", "link"])).stdout)
            .into_owned();
        if !links.contains(&ours) {
            break;
        }
        assert!(Instant::now() < deadline, "veths left behind: {links}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
