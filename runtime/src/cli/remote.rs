//! The command line against running agents: `faultline --agent URL executions|stop|
//! emergency-stop` (and, through [`super::fleet`], `run`), and the API client they share.
//!
//! # Who is called, with what
//!
//! The global flags ([`RemoteArgs`]) name the agents: `--agent URL` (repeated or
//! comma-separated, env `FAULTLINE_AGENT`) and/or `--fleet fleet.toml` narrowed by `--select
//! key=value` ([`super::fleet`]). Every request carries the bearer token of `--token-file F`
//! (env `FAULTLINE_TOKEN_FILE`; the file must not be accessible to its group or others) or of
//! env `FAULTLINE_TOKEN`. The token is never printed: [`Token`]'s `Debug` hides it and error
//! messages never hold it. `--ca-cert PEM` adds a CA for agents serving TLS.
//!
//! # Bounds
//!
//! Connecting times out after [`CONNECT_TIMEOUT`], every request after [`REQUEST_TIMEOUT`]
//! (a stop, which answers once everything is reverted, after [`STOP_TIMEOUT`]); an answer is
//! read up to [`MAX_ANSWER`] bytes. An event stream ([`Events`]) has no overall deadline but
//! ends when nothing, not even a keep-alive, comes for [`EVENTS_IDLE`]. Redirects are not
//! followed: the token goes to the named agent only.
//!
//! # Exit codes
//!
//! As in [`super`], plus: 2 for a token the agent refuses (401) or a role or team that may not
//! do this (403), and for an unknown execution; 7 ([`EXIT_UNREACHABLE`]) when an agent cannot be
//! reached, times out, answers with a server error or with something that is not the API's
//! JSON. Text the agents send (errors, names, log lines) is printed with control characters
//! escaped.

use super::executions::{self, ExecutionsCommand, plain};
use super::{EXIT_OK, EXIT_REVERT_FAILED, EXIT_USAGE, EmergencyStopArgs};
use crate::experiment::record::{LogEntry, Record};
use crate::experiment::store::Summary;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit code: an agent could not be reached, timed out, failed (5xx) or answered with
/// something that is not the API's JSON.
pub const EXIT_UNREACHABLE: u8 = 7;
/// How long connecting to an agent may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request (answer included) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop may take: it answers once everything is reverted, and a revert is bounded
/// by the agent's call timeout (10 s unless configured).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// An event stream that sends nothing for this long (the agent sends a keep-alive every 15 s)
/// is taken as broken.
pub const EVENTS_IDLE: Duration = Duration::from_secs(40);
/// The largest answer read.
pub const MAX_ANSWER: usize = 16 << 20;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// The longest token accepted.
const MAX_TOKEN: usize = 1024;
/// The largest CA certificate file read.
const MAX_CA_FILE: u64 = 1 << 20;

/// The global flags that send a command to agents instead of running it on this host.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RemoteArgs {
    /// Drive a running agent instead of this host: its API's URL (`http://10.0.0.1:7787`,
    /// `https://agent.example:7787`). Repeat it or separate URLs with commas for several.
    #[arg(
        long = "agent",
        global = true,
        env = "FAULTLINE_AGENT",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub agents: Vec<String>,
    /// The file holding the bearer token for the agents; it must not be accessible to its
    /// group or others. Without it, env `FAULTLINE_TOKEN` holds the token.
    #[arg(long, global = true, env = "FAULTLINE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A fleet file listing agents (`[[agent]]` tables with `url`, optional `name` and
    /// `labels`).
    #[arg(long, global = true, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// Only the agents whose labels (in the fleet file, and as each agent reports them) have
    /// this value; repeat for several (all must match).
    #[arg(long = "select", global = true, value_name = "KEY=VALUE")]
    pub select: Vec<String>,
    /// A PEM file of CA certificates to trust for agents serving TLS (besides the built-in
    /// roots).
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

impl RemoteArgs {
    /// Whether the command goes to agents.
    pub fn wanted(&self) -> bool {
        !self.agents.is_empty() || self.fleet.is_some()
    }
}

/// A bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// A token from its text: trimmed, 1 to 1024 visible ASCII characters.
    pub fn parse(text: &str, from: &str) -> Result<Token, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("{from} holds no token"));
        }
        if token.len() > MAX_TOKEN {
            return Err(format!(
                "{from} holds more than the {MAX_TOKEN} characters a token may have"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{from} holds characters a token cannot have (spaces, control or non-ASCII characters)"
            ));
        }
        Ok(Token(token.to_string()))
    }

    /// The token of `--token-file` when given, else of `env` (`FAULTLINE_TOKEN`). A token
    /// file that its group or others may access is refused. Sync: reads the file.
    pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Token, String> {
        use std::io::Read as _;
        use std::os::unix::fs::PermissionsExt as _;
        let Some(path) = file else {
            return match env {
                Some(text) => Token::parse(&text, "FAULTLINE_TOKEN"),
                None => Err(
                    "the agents need a token: give --token-file FILE (or FAULTLINE_TOKEN_FILE), or set FAULTLINE_TOKEN"
                        .into(),
                ),
            };
        };
        let shown = path.display();
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the token file {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the token file {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("the token file {shown} is not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the token file {shown} may be read by its group or others (mode {mode:03o}); a token must be private: chmod 600 {shown}"
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read the token file {shown}: {e}"))?;
        if bytes.len() as u64 > MAX_TOKEN_FILE {
            return Err(format!(
                "the token file {shown} is larger than {MAX_TOKEN_FILE} bytes"
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("the token file {shown} is not UTF-8 text"))?;
        Token::parse(&text, &format!("the token file {shown}"))
    }
}

/// One agent to call: a name for people and the API's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// How messages name it: the fleet file's `name`, else the URL's host and port.
    pub name: String,
    /// The API's base URL (`http` or `https`, no credentials, query or fragment).
    pub url: Url,
    /// Its labels in the fleet file (none for `--agent`).
    pub labels: BTreeMap<String, String>,
}

impl Endpoint {
    /// An agent's URL, checked: `http` or `https`, a host, no user name or password (the token
    /// goes in `--token-file`), no query or fragment.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        let shown = plain(text);
        if text.starts_with("unix:") {
            return Err(format!(
                "agent {shown}: the command line reaches agents over TCP only; give the agent a TCP listener (with TLS)"
            ));
        }
        let url = Url::parse(text)
            .map_err(|e| format!("agent {shown} is not a URL (like http://10.0.0.1:7787): {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "agent {shown}: the scheme must be http or https, not {}",
                url.scheme()
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("agent {shown} names no host"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "agent {shown}: credentials do not belong in the URL; give the token with --token-file"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "agent {shown}: the URL must not have a query or a fragment"
            ));
        }
        let name = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Endpoint {
            name,
            url,
            labels: BTreeMap::new(),
        })
    }

    /// The URL of an API path (`/v1/...`), under the base URL's path.
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url.as_str().trim_end_matches('/'))
    }
}

/// Why a request to an agent failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteError {
    /// No connection could be made, or it broke.
    Unreachable {
        /// The agent.
        agent: String,
        /// What happened.
        detail: String,
    },
    /// No answer in time.
    TimedOut {
        /// The agent.
        agent: String,
        /// The deadline.
        after: Duration,
    },
    /// The agent answered with an error status.
    Status {
        /// The agent.
        agent: String,
        /// The status.
        status: u16,
        /// The agent's `error` text (escaped).
        message: String,
        /// The agent's `problems`, when it listed them (escaped).
        problems: Vec<String>,
    },
    /// The answer is not the API's JSON, or too large.
    BadAnswer {
        /// The agent.
        agent: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl RemoteError {
    /// The HTTP status, when the agent answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The exit code: 2 for what the caller can fix (token, role, team, unknown id, bad
    /// request), [`EXIT_UNREACHABLE`] for the agent or the network failing.
    pub fn exit_code(&self) -> u8 {
        match self {
            RemoteError::Status { status, .. } if *status < 500 => EXIT_USAGE,
            _ => EXIT_UNREACHABLE,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Unreachable { agent, detail } => {
                write!(f, "agent {agent} cannot be reached: {detail}")
            }
            RemoteError::TimedOut { agent, after } => write!(
                f,
                "agent {agent} did not answer within {}",
                humantime::format_duration(*after)
            ),
            RemoteError::Status {
                agent,
                status,
                message,
                problems,
            } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                match status {
                    401 => write!(
                        f,
                        "agent {agent} refused the token (401 {reason}): {message}; give a token the agent knows with --token-file or FAULTLINE_TOKEN"
                    )?,
                    403 => write!(
                        f,
                        "agent {agent}: the token's role or team may not do this (403 {reason}): {message}"
                    )?,
                    _ => write!(f, "agent {agent} answered {status} {reason}: {message}")?,
                }
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
            RemoteError::BadAnswer { agent, detail } => {
                write!(
                    f,
                    "agent {agent} gave an answer that is not the API's: {detail}"
                )
            }
        }
    }
}

/// The HTTP client for agents: the token, the timeouts, the trusted CAs.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    token: Token,
}

impl Client {
    /// A client sending `token`, trusting the built-in roots and the certificates of `ca_pem`.
    pub fn new(token: Token, ca_pem: Option<&[u8]>) -> Result<Client, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("--ca-cert holds no usable PEM certificate: {e}"))?;
            if certs.is_empty() {
                return Err("--ca-cert holds no PEM certificate".into());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, token })
    }

    /// Reads `--ca-cert` (bounded). Sync.
    pub fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read --ca-cert {}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_CA_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read --ca-cert {}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_CA_FILE {
            return Err(format!(
                "--ca-cert {} is larger than {MAX_CA_FILE} bytes",
                path.display()
            ));
        }
        Ok(bytes)
    }

    fn request(&self, agent: &Endpoint, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, agent.at(path))
            .bearer_auth(&self.token.0)
    }

    /// Calls `method path` on `agent` with a JSON `body`; the answer's JSON (`null` when it is
    /// empty), or the error, within `timeout`.
    pub async fn call(
        &self,
        agent: &Endpoint,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let mut request = self.request(agent, method, path).timeout(timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(agent, &e, timeout))?;
        let status = response.status();
        let bytes = read_bounded(agent, response, timeout).await?;
        if !status.is_success() {
            return Err(status_error(agent, status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::BadAnswer {
            agent: agent.name.clone(),
            detail: format!("{status} with a body that is not JSON: {e}"),
        })
    }

    /// `GET path`, decoded as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        agent: &Endpoint,
        path: &str,
    ) -> Result<T, RemoteError> {
        let value = self
            .call(agent, Method::GET, path, None, REQUEST_TIMEOUT)
            .await?;
        decode(agent, path, value)
    }

    /// Opens the event stream at `path` (`text/event-stream`).
    pub async fn events(&self, agent: &Endpoint, path: &str) -> Result<Events, RemoteError> {
        let request = self
            .request(agent, Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, request.send()).await {
            Err(_) => {
                return Err(RemoteError::TimedOut {
                    agent: agent.name.clone(),
                    after: REQUEST_TIMEOUT,
                });
            }
            Ok(r) => r.map_err(|e| transport_error(agent, &e, REQUEST_TIMEOUT))?,
        };
        let status = response.status();
        if !status.is_success() {
            let bytes = read_bounded(agent, response, REQUEST_TIMEOUT).await?;
            return Err(status_error(agent, status, &bytes));
        }
        Ok(Events {
            agent: agent.name.clone(),
            response,
            parser: SseParser::default(),
            ready: std::collections::VecDeque::new(),
            idle: EVENTS_IDLE,
        })
    }
}

/// Decodes an answer as `T`, naming the path when it does not fit.
pub fn decode<T: serde::de::DeserializeOwned>(
    agent: &Endpoint,
    path: &str,
    value: Value,
) -> Result<T, RemoteError> {
    serde_json::from_value(value).map_err(|e| RemoteError::BadAnswer {
        agent: agent.name.clone(),
        detail: format!("{path}: {e}"),
    })
}

fn transport_error(agent: &Endpoint, e: &reqwest::Error, timeout: Duration) -> RemoteError {
    if e.is_timeout() {
        return RemoteError::TimedOut {
            agent: agent.name.clone(),
            after: if e.is_connect() {
                CONNECT_TIMEOUT
            } else {
                timeout
            },
        };
    }
    // The chain says why (refused, reset, certificate); the URL is already in `agent`.
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !detail.contains(&text) {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&text);
        }
        source = s.source();
    }
    RemoteError::Unreachable {
        agent: agent.name.clone(),
        detail: plain(&detail),
    }
}

async fn read_bounded(
    agent: &Endpoint,
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, RemoteError> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_ANSWER {
                    return Err(RemoteError::BadAnswer {
                        agent: agent.name.clone(),
                        detail: format!("the answer is larger than {MAX_ANSWER} bytes"),
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(transport_error(agent, &e, timeout)),
        }
    }
}

/// The longest error text kept from an agent.
const MAX_MESSAGE: usize = 2000;

fn status_error(agent: &Endpoint, status: StatusCode, body: &[u8]) -> RemoteError {
    let shorten = |s: &str| plain(&s.chars().take(MAX_MESSAGE).collect::<String>());
    let (message, problems) = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let message = v
                .get("error")
                .and_then(Value::as_str)
                .map(shorten)
                .unwrap_or_else(|| "(no error text)".into());
            let problems = v
                .get("problems")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .take(100)
                        .map(|p| match p.as_str() {
                            Some(s) => shorten(s),
                            None => shorten(&p.to_string()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (message, problems)
        }
        Err(_) if body.is_empty() => ("(no error text)".to_string(), Vec::new()),
        Err(_) => (shorten(&String::from_utf8_lossy(body)), Vec::new()),
    };
    RemoteError::Status {
        agent: agent.name.clone(),
        status: status.as_u16(),
        message,
        problems,
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` type (`message` when it names none).
    pub event: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// The largest event (and line) of an event stream: a record with many probe checks is large.
pub const MAX_EVENT: usize = 16 << 20;

/// A `text/event-stream` parser fed with chunks as they come: lines end with LF, CR or CRLF
/// (also across chunks), `:` lines are comments (keep-alives), a blank line ends an event.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed, or an error for an event past
    /// [`MAX_EVENT`].
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut done = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(e) = self.line_done(&line) {
                        done.push(e);
                    }
                }
                _ => {
                    if self.line.len() + self.data.len() >= MAX_EVENT {
                        return Err(format!("an event is larger than {MAX_EVENT} bytes"));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(done)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            let had = std::mem::replace(&mut self.has_data, false);
            if !had {
                return None;
            }
            return Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` matter to browsers reconnecting; the CLI reconnects itself.
            _ => {}
        }
        None
    }
}

/// An open event stream.
pub struct Events {
    agent: String,
    response: reqwest::Response,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    idle: Duration,
}

impl Events {
    /// The next event; `Ok(None)` when the agent closed the stream; an error when it broke,
    /// sent something too large, or sent nothing for [`EVENTS_IDLE`].
    pub async fn next(&mut self) -> Result<Option<SseEvent>, RemoteError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let chunk = match tokio::time::timeout(self.idle, self.response.chunk()).await {
                Err(_) => {
                    return Err(RemoteError::TimedOut {
                        agent: self.agent.clone(),
                        after: self.idle,
                    });
                }
                Ok(Err(e)) => {
                    return Err(RemoteError::Unreachable {
                        agent: self.agent.clone(),
                        detail: format!("the event stream broke: {e}"),
                    });
                }
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(c))) => c,
            };
            let events = self
                .parser
                .feed(&chunk)
                .map_err(|detail| RemoteError::BadAnswer {
                    agent: self.agent.clone(),
                    detail,
                })?;
            self.ready.extend(events);
        }
    }
}

/// An execution id from the command line, checked before it goes into a URL path: 1 to 64
/// letters, digits, `-` or `_` (ids are ULIDs).
pub fn execution_id(id: &str) -> Result<&str, String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(format!(
            "{:?} is not an execution id (letters, digits, - and _, at most 64)",
            plain(&id.chars().take(80).collect::<String>())
        ))
    }
}

/// The agents a command goes to, and the client that reaches them.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The client.
    pub client: Client,
    /// The selected agents, in the order given.
    pub agents: Vec<Endpoint>,
}

impl Remote {
    /// Reads the token, the CA and the fleet file, and selects the agents (asking each
    /// candidate for its labels when `--select` is given). An error is `(exit code, message)`.
    pub async fn connect(args: &RemoteArgs) -> Result<Remote, (u8, String)> {
        let (file, ca) = (args.token_file.clone(), args.ca_cert.clone());
        // Token and CA are files: read on the blocking pool.
        let read = tokio::task::spawn_blocking(move || {
            let token = Token::load(file.as_deref(), std::env::var("FAULTLINE_TOKEN").ok())?;
            let ca = ca.as_deref().map(Client::read_ca).transpose()?;
            Ok::<_, String>((token, ca))
        })
        .await;
        let (token, ca) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err((EXIT_USAGE, e)),
            Err(e) => return Err((EXIT_USAGE, format!("reading the token failed: {e}"))),
        };
        let client = Client::new(token, ca.as_deref()).map_err(|e| (EXIT_USAGE, e))?;
        let agents = super::fleet::resolve(args, &client).await?;
        Ok(Remote { client, agents })
    }
}

/// Runs every `f(agent)` at once; the answers in the agents' order.
pub async fn fan_out<'a, T, F, Fut>(agents: &'a [Endpoint], f: F) -> Vec<T>
where
    F: Fn(&'a Endpoint) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    join_all(agents.iter().map(f)).await
}

/// The worst of some exit codes: a revert failure first, then the agents failing, then what
/// the caller can fix.
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    let rank = |c: u8| match c {
        EXIT_REVERT_FAILED => 6,
        EXIT_UNREACHABLE => 5,
        4 => 4,
        3 => 3,
        EXIT_USAGE => 2,
        EXIT_OK => 0,
        _ => 1,
    };
    codes
        .into_iter()
        .max_by_key(|c| rank(*c))
        .unwrap_or(EXIT_OK)
}

/// `faultline --agent URL executions list|show|log`.
pub async fn executions(command: ExecutionsCommand, remote: &Remote, out: &mut dyn Write) -> u8 {
    let client = &remote.client;
    match command {
        ExecutionsCommand::List { limit, json } => {
            let path = format!("/v1/experiments?limit={limit}");
            let answers = fan_out(&remote.agents, |a| async {
                let value = client.get::<Value>(a, &path).await?;
                let list = value.get("executions").cloned().unwrap_or(value);
                decode::<Vec<Summary>>(a, "/v1/experiments", list)
            })
            .await;
            let mut codes = Vec::new();
            if json {
                let doc: Vec<Value> = remote
                    .agents
                    .iter()
                    .zip(&answers)
                    .map(|(a, r)| match r {
                        Ok(list) => {
                            json!({"agent": a.name, "url": a.url.as_str(), "executions": list})
                        }
                        Err(e) => {
                            json!({"agent": a.name, "url": a.url.as_str(), "error": e.to_string()})
                        }
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                );
            }
            for (a, r) in remote.agents.iter().zip(answers) {
                match r {
                    Ok(list) => {
                        if !json {
                            let _ = writeln!(out, "agent {} ({}):", a.name, a.url);
                            let _ =
                                executions::print_list(&list, &format!("agent {}", a.name), out);
                        }
                    }
                    Err(e) => {
                        if !json {
                            let _ = writeln!(out, "error: {e}");
                        }
                        codes.push(e.exit_code());
                    }
                }
            }
            worst(codes)
        }
        ExecutionsCommand::Show { id, json } => {
            let id = match execution_id(&id) {
                Ok(id) => id.to_string(),
                Err(e) => return usage(out, e),
            };
            let path = format!("/v1/experiments/{id}");
            let answers = fan_out(&remote.agents, |a| async {
                client.get::<Record>(a, &path).await
            })
            .await;
            found_on(remote, &id, answers, out, |a, record, out| {
                if json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&record).unwrap_or_default()
                    );
                } else {
                    let _ = writeln!(out, "agent {} ({})", a.name, a.url);
                    let _ = executions::print_show(&record, out);
                }
            })
        }
        ExecutionsCommand::Log { id } => {
            let id = match execution_id(&id) {
                Ok(id) => id.to_string(),
                Err(e) => return usage(out, e),
            };
            let path = format!("/v1/experiments/{id}/log");
            let answers = fan_out(&remote.agents, |a| async {
                let value = client.get::<Value>(a, &path).await?;
                let lines = value.get("lines").cloned().unwrap_or(Value::Null);
                decode::<Vec<LogEntry>>(a, &path, lines)
            })
            .await;
            found_on(remote, &id, answers, out, |_, lines, out| {
                let _ = executions::print_log(&lines, out);
            })
        }
    }
}

fn usage(out: &mut dyn Write, e: String) -> u8 {
    let _ = writeln!(out, "error: {e}");
    EXIT_USAGE
}

/// Shows what the agents that know execution `id` answered; the others' 404s are expected (an
/// execution lives on one agent), their other errors are printed. None knowing it is an error.
fn found_on<T>(
    remote: &Remote,
    id: &str,
    answers: Vec<Result<T, RemoteError>>,
    out: &mut dyn Write,
    mut show: impl FnMut(&Endpoint, T, &mut dyn Write),
) -> u8 {
    let mut found = false;
    let mut codes = Vec::new();
    for (a, r) in remote.agents.iter().zip(answers) {
        match r {
            Ok(v) => {
                found = true;
                show(a, v, out);
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                codes.push(e.exit_code());
            }
        }
    }
    if !found && codes.is_empty() {
        let _ = writeln!(
            out,
            "error: no execution {id} on {}",
            agents_named(&remote.agents)
        );
        return EXIT_USAGE;
    }
    worst(codes)
}

/// `agent a` or `any of the 3 agents (a, b, c)`.
pub fn agents_named(agents: &[Endpoint]) -> String {
    match agents {
        [one] => format!("agent {}", one.name),
        many => format!(
            "any of the {} agents ({})",
            many.len(),
            many.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `faultline stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The execution's id (as `run` and `executions list` print it).
    pub id: String,
    /// Print the final record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `faultline --agent URL stop ID`: stops the execution on the agent that runs it and shows
/// its final record once everything is reverted.
pub async fn stop(args: StopArgs, remote: &Remote, out: &mut dyn Write) -> u8 {
    let id = match execution_id(&args.id) {
        Ok(id) => id.to_string(),
        Err(e) => return usage(out, e),
    };
    let path = format!("/v1/experiments/{id}/stop");
    let client = &remote.client;
    let answers = fan_out(&remote.agents, |a| async {
        let value = client
            .call(a, Method::POST, &path, None, STOP_TIMEOUT)
            .await?;
        decode::<Record>(a, &path, value)
    })
    .await;
    let mut changed = false;
    let code = found_on(remote, &id, answers, out, |a, record, out| {
        changed |= record.host_changed();
        if args.json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&record).unwrap_or_default()
            );
        } else {
            let _ = writeln!(out, "{}", summary_line(a, &record));
        }
    });
    if changed { EXIT_REVERT_FAILED } else { code }
}

/// One line about an agent's record: end state, status, score, reason.
pub fn summary_line(agent: &Endpoint, r: &Record) -> String {
    format!(
        "agent {}: execution {} {} — {}, resilience score {}{}",
        agent.name,
        r.id,
        r.end_state.map_or("-", |e| e.as_str()),
        r.status.as_str(),
        r.score.map_or_else(|| "-".into(), |s| format!("{s:.1}")),
        r.reason
            .as_ref()
            .map(|x| format!(" ({})", plain(x)))
            .unwrap_or_default()
    )
}

/// `faultline --agent URL emergency-stop [--reason R | --clear]` on every selected agent.
pub async fn emergency_stop(args: EmergencyStopArgs, remote: &Remote, out: &mut dyn Write) -> u8 {
    let client = &remote.client;
    let body = json!({ "reason": args.reason });
    let answers = fan_out(&remote.agents, |a| async {
        if args.clear {
            client
                .call(
                    a,
                    Method::DELETE,
                    "/v1/emergency-stop",
                    None,
                    REQUEST_TIMEOUT,
                )
                .await
        } else {
            client
                .call(
                    a,
                    Method::POST,
                    "/v1/emergency-stop",
                    Some(&body),
                    STOP_TIMEOUT,
                )
                .await
        }
    })
    .await;
    let mut codes = Vec::new();
    for (a, r) in remote.agents.iter().zip(answers) {
        match r {
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                codes.push(e.exit_code());
            }
            Ok(v) if args.clear => {
                let was = v.get("cleared").and_then(Value::as_bool).unwrap_or(true);
                let _ = writeln!(
                    out,
                    "agent {}: {}",
                    a.name,
                    if was {
                        "emergency stop cleared: runs may start again"
                    } else {
                        "no emergency stop was active"
                    }
                );
            }
            Ok(v) => {
                // `{runs: {stopped, failures, ...}, experiments: N}`.
                let runs = v.get("runs").unwrap_or(&Value::Null);
                let stopped = runs.get("stopped").and_then(Value::as_u64).unwrap_or(0)
                    + v.get("experiments").and_then(Value::as_u64).unwrap_or(0);
                let failures: Vec<String> = runs
                    .get("failures")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(Value::as_str).map(plain).collect())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "agent {}: emergency stop set: {stopped} stopped and reverted; new runs are refused until `emergency-stop --clear`",
                    a.name
                );
                if !failures.is_empty() {
                    let _ = writeln!(
                        out,
                        "agent {}: REVERT FAILED, the host may still be changed:",
                        a.name
                    );
                    for f in failures {
                        let _ = writeln!(out, "  - {f}");
                    }
                    codes.push(EXIT_REVERT_FAILED);
                }
            }
        }
    }
    worst(codes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_line_ends() {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        let stream = b": keep-alive\r\nevent: record\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: log\rdata: x\r\rdata: lone\n\n: only a comment\n\n";
        // One byte at a time: a CR at the end of a chunk and its LF in the next are one line end.
        for b in stream.chunks(1) {
            got.extend(p.feed(b).unwrap());
        }
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: "record".into(),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    event: "log".into(),
                    data: "x".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "lone".into()
                },
            ]
        );
        let mut whole = SseParser::default();
        assert_eq!(whole.feed(stream).unwrap(), got);
    }

    #[test]
    fn an_event_past_the_bound_is_an_error() {
        let mut p = SseParser::default();
        let big = vec![b'a'; 1 << 20];
        let mut fed = Ok(Vec::new());
        p.feed(b"data: ").unwrap();
        for _ in 0..17 {
            fed = p.feed(&big);
            if fed.is_err() {
                break;
            }
        }
        assert!(fed.unwrap_err().contains("larger than"));
    }

    #[test]
    fn urls_are_checked() {
        let e = Endpoint::parse("http://10.0.0.1:7787").unwrap();
        assert_eq!(e.name, "10.0.0.1:7787");
        assert_eq!(e.at("/v1/status"), "http://10.0.0.1:7787/v1/status");
        let e = Endpoint::parse("https://agent.example/base/").unwrap();
        assert_eq!(e.name, "agent.example:443");
        assert_eq!(e.at("/v1/status"), "https://agent.example/base/v1/status");
        for (bad, says) in [
            ("ftp://x", "http or https"),
            ("http://u:p@x:1", "credentials"),
            ("http://x:1/?a=b", "query"),
            ("unix:/run/faultline.sock", "TCP only"),
            ("10.0.0.1:7787", "like http://"),
            ("not a url", "not a URL"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn ids_with_path_tricks_are_refused() {
        assert!(execution_id("01JBZ4Q5T6V7W8X9Y0ZABCDEFG").is_ok());
        for bad in ["", "../status", "a/b", "a?b", "%2e%2e", &"a".repeat(65)] {
            assert!(execution_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = Token::parse("  s3cret-token\n", "FAULTLINE_TOKEN").unwrap();
        assert_eq!(format!("{t:?}"), "Token(<hidden>)");
        assert!(Token::parse(" \n", "x").unwrap_err().contains("no token"));
        assert!(Token::parse("a b", "x").unwrap_err().contains("spaces"));
        assert!(
            Token::load(None, None)
                .unwrap_err()
                .contains("--token-file")
        );
    }

    #[test]
    fn token_files_others_may_read_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::load(Some(&path), None).unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Token::load(Some(&path), None).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The file wins over the environment.
        let t = Token::load(Some(&path), Some("other".into())).unwrap();
        assert_eq!(t.0, "s3cret");
    }

    #[test]
    fn errors_name_the_role_or_token_problem() {
        let agent = Endpoint::parse("http://10.0.0.1:7787").unwrap();
        let e = status_error(
            &agent,
            StatusCode::FORBIDDEN,
            br#"{"error":"team blue may not start experiments of team red"}"#,
        );
        let text = e.to_string();
        assert!(
            text.contains("403") && text.contains("role or team"),
            "{text}"
        );
        assert!(text.contains("team blue"), "{text}");
        assert_eq!(e.exit_code(), EXIT_USAGE);
        let e = status_error(
            &agent,
            StatusCode::UNAUTHORIZED,
            b"{\"error\":\"x\x1b[31m\"}",
        );
        assert!(e.to_string().contains("refused the token"), "{e}");
        assert!(!e.to_string().contains('\x1b'), "{e}");
        let e = status_error(&agent, StatusCode::INTERNAL_SERVER_ERROR, b"oops");
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE);
        let e = status_error(
            &agent,
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad","problems":["lanes[0]: no steps"]}"#,
        );
        assert!(e.to_string().ends_with("\n  - lanes[0]: no steps"), "{e}");
    }

    #[test]
    fn the_worst_code_wins() {
        assert_eq!(worst([]), EXIT_OK);
        assert_eq!(worst([0, 2, 0]), 2);
        assert_eq!(worst([2, EXIT_UNREACHABLE, 3]), EXIT_UNREACHABLE);
        assert_eq!(
            worst([EXIT_UNREACHABLE, EXIT_REVERT_FAILED]),
            EXIT_REVERT_FAILED
        );
    }
}
