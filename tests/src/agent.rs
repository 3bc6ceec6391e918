//! Test support: a real `faultline agent` (the test package's `faultline-e2e` binary) with its
//! own `agent.toml`, tokens file and state directory.
//!
//! ```no_run
//! use faultline::agent::auth::Role;
//! use faultline_tests::agent::{Options, TestAgent};
//! let agent = TestAgent::start(Options::default());
//! let (code, body) = agent.call_as(agent.token(Role::Viewer), "GET", "/v1/status", "");
//! assert_eq!(code, 200, "{body}");
//! ```
//!
//! Tokens: a viewer, a runner and an admin of team `red` ([`TestAgent::token`]) and a runner of
//! team `blue` ([`TestAgent::runner_of`]). Dropping the agent sends SIGTERM (which reverts
//! everything it holds), waits up to 10 s, then kills it.

use faultline::agent::auth::{Role, hash, mint};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the agent is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policy file's text; `None`: no policy (nothing granted).
    pub policy: Option<String>,
    /// Lines added to the `[agent]` table (`max_connections = 4`, `idle_timeout = "1s"`, …).
    pub extra: String,
    /// A `faultline.toml` whose `[hub]` table is used (e.g. [`crate::fixture_hub`]); `None`:
    /// the bundled hub.
    pub hub_config: Option<PathBuf>,
    /// The state directory; `None`: a fresh one in the agent's temporary directory. Give the
    /// same one to an agent started after another was killed to test recovery.
    pub state_dir: Option<PathBuf>,
    /// `listen`: default `127.0.0.1:0`. Another address off loopback needs `tls` or
    /// `insecure_plaintext = true` in `extra`.
    pub listen: Option<String>,
    /// Listen on a Unix socket in the temporary directory (`listen` is then ignored).
    pub unix: bool,
    /// Serve TLS with a fresh self-signed certificate for `localhost` and `127.0.0.1`
    /// ([`TestAgent::ca_pem`]).
    pub tls: bool,
    /// Run inside this named network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Deadline of each call into a component (default 2s: a lease of a few seconds outlives
    /// a revert).
    pub call_timeout: String,
    /// Wait for `/readyz` to answer 200 before returning (default true).
    pub wait_ready: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            policy: None,
            extra: String::new(),
            hub_config: None,
            state_dir: None,
            listen: None,
            unix: false,
            tls: false,
            netns: None,
            call_timeout: "2s".into(),
            wait_ready: true,
        }
    }
}

impl Options {
    /// Default options with this policy text.
    pub fn with_policy(policy: impl Into<String>) -> Options {
        Options {
            policy: Some(policy.into()),
            ..Options::default()
        }
    }
}

/// A minted token and who it is.
#[derive(Debug, Clone)]
pub struct TestToken {
    /// The token's name in the tokens file.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its team.
    pub team: String,
    /// The token itself.
    pub token: String,
}

/// A running agent.
pub struct TestAgent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    state_dir: PathBuf,
    describe: String,
    url: String,
    tokens: Vec<TestToken>,
    output: Arc<Mutex<String>>,
    ca_pem: Option<String>,
}

/// The `faultline` binary the tests package builds: `$FAULTLINE_BIN`, else `faultline-e2e`
/// next to the running test binary's directory (`target/debug/deps/..`).
pub fn bin() -> PathBuf {
    if let Some(b) = std::env::var_os("FAULTLINE_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("faultline-e2e");
    assert!(
        bin.exists(),
        "{} is missing: build the tests package's binaries (cargo test -p faultline-tests builds it)",
        bin.display()
    );
    bin
}

impl TestAgent {
    /// Writes `agent.toml`, the tokens and the policy into a temporary directory, starts the
    /// agent and waits until it listens (and, by default, until `/readyz` answers 200).
    pub fn start(opts: Options) -> TestAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = opts
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state"));
        let tokens = [
            ("red-viewer", Role::Viewer, "red"),
            ("red-runner", Role::Runner, "red"),
            ("red-admin", Role::Admin, "red"),
            ("blue-runner", Role::Runner, "blue"),
        ]
        .map(|(name, role, team)| TestToken {
            name: name.into(),
            role,
            team: team.into(),
            token: mint(),
        })
        .to_vec();
        write_tokens(&dir.path().join("tokens.toml"), &tokens);
        let mut agent = String::from("[agent]\ntokens = \"tokens.toml\"\n");
        let listen = if opts.unix {
            format!("unix:{}", dir.path().join("agent.sock").display())
        } else {
            opts.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into())
        };
        agent.push_str(&format!("listen = {listen:?}\n"));
        agent.push_str(&format!("call_timeout = {:?}\n", opts.call_timeout));
        if let Some(policy) = &opts.policy {
            std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
            agent.push_str("policy = \"policy.toml\"\n");
        }
        let mut ca_pem = None;
        if opts.tls {
            let cert = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
            agent.push_str("tls = { cert = \"cert.pem\", key = \"key.pem\" }\n");
            ca_pem = Some(cert.cert.pem());
        }
        agent.push_str(&opts.extra);
        agent.push('\n');
        if let Some(hub) = &opts.hub_config {
            // The fixture hub's file has only a [hub] table (absolute paths).
            agent.push_str(&std::fs::read_to_string(hub).expect("hub config"));
        }
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, agent).unwrap();

        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("--state-dir")
            .arg(&state_dir)
            .arg("--config")
            .arg(&config)
            .arg("agent")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("FAULTLINE_POLICY");
        let mut child = cmd.spawn().expect("spawn faultline agent");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let out = BufReader::new(child.stdout.take().unwrap());
            let lines = output.clone();
            std::thread::spawn(move || {
                for line in out.lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
            let mut err = child.stderr.take().unwrap();
            let errors = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    errors
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the agent printed no first line within 60 s:\n{}",
                    output.lock().unwrap()
                );
            }
        };
        let Some(describe) = first.strip_prefix("listening on ").map(str::to_string) else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the agent did not start: {first}\n{}",
                output.lock().unwrap()
            );
        };
        let url = if describe.starts_with("https://") || describe.starts_with("unix:") {
            describe.clone()
        } else {
            format!("http://{describe}")
        };
        let agent = TestAgent {
            child: Some(child),
            dir,
            state_dir,
            describe,
            url,
            tokens,
            output,
            ca_pem,
        };
        if opts.wait_ready {
            agent.wait_ready(Duration::from_secs(30));
        }
        agent
    }

    /// Waits until `/readyz` answers 200; panics with the agent's output when it never does.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let code = if self.ca_pem.is_some() {
                let (client, url) = (self.client(), format!("{}/readyz", self.url));
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        match client.get(url).send().await {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        }
                    })
                })
                .join()
                .unwrap()
            } else {
                self.try_raw(
                    b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                )
                .map(|(c, _)| c)
                .unwrap_or(0)
            };
            if code == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200 (last {code}):\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The base URL: `http://127.0.0.1:PORT`, `https://127.0.0.1:PORT` or `unix:/path`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the agent printed after `listening on ` (`127.0.0.1:PORT` for plain TCP).
    pub fn addr(&self) -> &str {
        &self.describe
    }

    /// The Unix socket's path, when it listens on one.
    pub fn socket(&self) -> Option<PathBuf> {
        self.describe.strip_prefix("unix:").map(PathBuf::from)
    }

    /// The token of team `red` with `role`.
    pub fn token(&self, role: Role) -> &str {
        self.find(|t| t.role == role && t.team == "red")
    }

    /// The runner token of `team` (`red` or `blue`).
    pub fn runner_of(&self, team: &str) -> &str {
        self.find(|t| t.role == Role::Runner && t.team == team)
    }

    /// Every token with who it is.
    pub fn tokens(&self) -> &[TestToken] {
        &self.tokens
    }

    fn find(&self, pred: impl Fn(&TestToken) -> bool) -> &str {
        self.tokens
            .iter()
            .find(|t| pred(t))
            .map(|t| t.token.as_str())
            .expect("no such test token")
    }

    /// A reqwest client for [`TestAgent::url`] (trusting the agent's certificate under TLS);
    /// tokens are the caller's to add (`.bearer_auth(agent.token(Role::Viewer))`).
    pub fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(pem) = &self.ca_pem {
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
                .tls_built_in_root_certs(false);
        }
        b.build().unwrap()
    }

    /// The PEM certificate the agent serves under TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("agent stopped")
    }

    /// Everything the agent printed so far (stdout, then stderr as it came).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Its temporary directory (agent.toml, tokens.toml, policy.toml, the socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// One JSON request over plain TCP or the Unix socket with the admin token of team `red`:
    /// the status and the JSON body (`null` when there is none).
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.call_as(self.token(Role::Admin), method, path, body)
    }

    /// [`TestAgent::call`] with `token`.
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        self.raw(request_text(token, method, path, body).as_bytes())
    }

    /// Sends `raw` on a fresh connection (plain TCP or Unix) and reads until the agent closes
    /// it: the status and the JSON body (`null` when there is none).
    pub fn raw(&self, raw: &[u8]) -> (u16, serde_json::Value) {
        self.try_raw(raw)
            .unwrap_or_else(|e| panic!("request to {}: {e}\n{}", self.describe, self.output()))
    }

    fn try_raw(&self, raw: &[u8]) -> std::io::Result<(u16, serde_json::Value)> {
        let text = if let Some(path) = self.socket() {
            let mut s = std::os::unix::net::UnixStream::connect(path)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(raw)?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            text
        } else {
            let mut s = std::net::TcpStream::connect(&self.describe)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(raw)?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            text
        };
        Ok(parse_response(&text))
    }

    /// SIGKILL: no handler runs, nothing is reverted (recovery tests restart after it).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to 30 s, then SIGKILL): the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// One JSON request with `token` to an agent on plain TCP at `addr` (`127.0.0.1:PORT`), on a
/// fresh connection: for threads that hold no [`TestAgent`].
pub fn call_tcp(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let raw = request_text(token, method, path, body);
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    parse_response(&text)
}

fn request_text(token: &str, method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Writes the tokens file as the agent wants it: hashes only, mode 0600.
pub fn write_tokens(path: &Path, tokens: &[TestToken]) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut text = String::new();
    for t in tokens {
        text.push_str(&format!(
            "[[token]]\nname = {:?}\nrole = {:?}\nteam = {:?}\nsha256 = {:?}\n\n",
            t.name,
            t.role.as_str(),
            t.team,
            hash(&t.token)
        ));
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The status and JSON body of a raw HTTP/1.1 response (`null` body when empty or not JSON).
pub fn parse_response(text: &str) -> (u16, serde_json::Value) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
