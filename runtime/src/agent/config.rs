//! `agent.toml`: where the agent listens, who may call it, what it may run.
//!
//! ```toml
//! [agent]
//! listen = "127.0.0.1:7787"        # or "unix:/run/faultline/agent.sock"; default loopback
//! tls = { cert = "cert.pem", key = "key.pem" }   # optional (paths relative to the file)
//! tokens = "tokens.toml"           # required: hashed tokens
//! policy = "policy.toml"           # optional; nothing granted without
//! allowed_hosts = ["agent-1.internal"]
//! labels = { zone = "a" }
//! hub_sync_interval = "5m"
//! call_timeout = "10s"
//! max_connections = 256
//! idle_timeout = "10s"             # a connection's time to send a request head
//! body_timeout = "30s"             # the most a request body may pause between chunks
//! # insecure_plaintext = true      # only to listen on a non-loopback address without TLS
//!
//! [hub]                            # exactly as faultline.toml's [hub]
//! ```
//!
//! Errors name the file, line and column ([`ConfigError`]). Bearer tokens must not cross a
//! network in clear: a TCP listen address that is not loopback needs `tls`, or
//! `insecure_plaintext = true` written out.

use crate::hub::HubConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The largest `agent.toml` read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7787";

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address (loopback by default).
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Listen {
    /// Parses `127.0.0.1:7787`, `[::1]:7787` or `unix:/path` (a relative socket path is taken
    /// relative to `base`).
    pub fn parse(text: &str, base: &Path) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs a socket path, like unix:/run/faultline/agent.sock".into(),
                );
            }
            return Ok(Listen::Unix(base.join(path)));
        }
        text.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!(
                "listen {text:?} is neither an address with a port (127.0.0.1:7787, [::1]:7787) nor unix:<path>"
            )
        })
    }
}

/// TLS for the TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the API listens.
    pub listen: Listen,
    /// TLS, when configured.
    pub tls: Option<Tls>,
    /// The file of hashed tokens ([`crate::agent::auth::Tokens`]).
    pub tokens: PathBuf,
    /// The operator's policy; without one nothing is granted.
    pub policy: Option<PathBuf>,
    /// `Host` header values accepted besides the loopback names and the listen address.
    pub allowed_hosts: Vec<String>,
    /// Labels fleets select this agent by.
    pub labels: BTreeMap<String, String>,
    /// How often the hubs are synced.
    pub hub_sync_interval: Duration,
    /// Deadline of each call into a component.
    pub call_timeout: Duration,
    /// Connections served at once; a connection beyond them is answered 503 and closed.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head, counted from when it
    /// opens or finishes its previous response: slow clients and idle keep-alive connections
    /// are closed after it.
    pub idle_timeout: Duration,
    /// The longest a request body may pause between two chunks.
    pub body_timeout: Duration,
    /// Plain HTTP on a non-loopback address was asked for in so many words.
    pub insecure_plaintext: bool,
    /// The hubs (the `[hub]` table, as in `faultline.toml`).
    pub hub: HubConfig,
}

/// Bounds of the durations and counts a configuration may set.
const MAX_CONNECTIONS: usize = 65_536;
const MIN_SYNC: Duration = Duration::from_secs(10);
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl AgentConfig {
    /// A configuration with every default: loopback on 7787, no TLS, no policy, the bundled hub.
    pub fn new(listen: Listen, tokens: PathBuf) -> AgentConfig {
        AgentConfig {
            listen,
            tls: None,
            tokens,
            policy: None,
            allowed_hosts: Vec::new(),
            labels: BTreeMap::new(),
            hub_sync_interval: Duration::from_secs(300),
            call_timeout: Duration::from_secs(10),
            max_connections: 256,
            idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            insecure_plaintext: false,
            hub: HubConfig::default(),
        }
    }

    /// Reads `agent.toml` (at most 1 MiB; never blocks on a FIFO). Paths in it are relative to
    /// its directory. Sync: call before the runtime serves, or from the blocking pool.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let bytes = crate::component::read_bounded(path, MAX_CONFIG_BYTES, "agent configuration")
            .map_err(|e| ConfigError::plain(path, format!("{e:#}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| ConfigError::plain(path, format!("not UTF-8 text: {e}")))?;
        AgentConfig::parse(&text, path)
    }

    /// Parses the text of `agent.toml` read from `path` (which names the file in errors and is
    /// the base of relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::at(path, text, span, message)
        };
        let file: FileToml = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => at(span, e.message().to_string()),
            None => ConfigError::plain(path, e.message().to_string()),
        })?;
        let hub = HubConfig::from_toml_str(text, base)
            .map_err(|e| ConfigError::plain(path, format!("[hub]: {e}")))?;
        let agent = file.agent;
        let listen = match &agent.listen {
            Some(l) => Listen::parse(l.get_ref(), base).map_err(|m| at(l.span(), m))?,
            None => Listen::parse(DEFAULT_LISTEN, base).map_err(|m| ConfigError::plain(path, m))?,
        };
        let duration =
            |field: &str, value: &Option<Spanned<String>>, default: Duration, min: Duration| {
                let Some(v) = value else { return Ok(default) };
                let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
                    at(
                        v.span(),
                        format!(
                            "{field} {:?} is not a duration (like \"10s\"): {e}",
                            v.get_ref()
                        ),
                    )
                })?;
                if d < min || d > MAX_DURATION {
                    return Err(at(
                        v.span(),
                        format!(
                            "{field} {:?} is outside {} to 24h",
                            v.get_ref(),
                            humantime::format_duration(min)
                        ),
                    ));
                }
                Ok(d)
            };
        let defaults = AgentConfig::new(listen.clone(), PathBuf::new());
        let ms = Duration::from_millis(100);
        let mut config = AgentConfig {
            tls: agent.tls.as_ref().map(|t| Tls {
                cert: base.join(&t.get_ref().cert),
                key: base.join(&t.get_ref().key),
            }),
            tokens: base.join(agent.tokens.get_ref()),
            policy: agent.policy.as_ref().map(|p| base.join(p)),
            allowed_hosts: Vec::new(),
            labels: agent.labels.clone(),
            hub_sync_interval: duration(
                "hub_sync_interval",
                &agent.hub_sync_interval,
                defaults.hub_sync_interval,
                MIN_SYNC,
            )?,
            call_timeout: duration(
                "call_timeout",
                &agent.call_timeout,
                defaults.call_timeout,
                ms,
            )?,
            idle_timeout: duration(
                "idle_timeout",
                &agent.idle_timeout,
                defaults.idle_timeout,
                ms,
            )?,
            body_timeout: duration(
                "body_timeout",
                &agent.body_timeout,
                defaults.body_timeout,
                ms,
            )?,
            max_connections: defaults.max_connections,
            insecure_plaintext: agent.insecure_plaintext,
            listen,
            hub,
        };
        if let Some(n) = &agent.max_connections {
            let value = *n.get_ref();
            if value == 0 || value > MAX_CONNECTIONS as u64 {
                return Err(at(
                    n.span(),
                    format!("max_connections {value} is outside 1 to {MAX_CONNECTIONS}"),
                ));
            }
            config.max_connections = value as usize;
        }
        if agent.tokens.get_ref().is_empty() {
            return Err(at(
                agent.tokens.span(),
                "tokens needs the path of a tokens file".into(),
            ));
        }
        for host in &agent.allowed_hosts {
            let name = host.get_ref();
            if !valid_host(name) {
                return Err(at(
                    host.span(),
                    format!(
                        "allowed_hosts entry {name:?} is not a host name or address (like agent-1.internal, 10.0.0.1:7787)"
                    ),
                ));
            }
            config.allowed_hosts.push(name.to_ascii_lowercase());
        }
        if config.tls.is_some() && matches!(config.listen, Listen::Unix(_)) {
            let span = agent.tls.as_ref().map(|t| t.span()).unwrap_or(0..0);
            return Err(at(
                span,
                "tls is for a TCP listener; a Unix socket is guarded by its file mode".into(),
            ));
        }
        config.check_plaintext().map_err(|m| match &agent.listen {
            Some(l) => at(l.span(), m),
            None => ConfigError::plain(path, m),
        })?;
        Ok(config)
    }

    /// Refuses plain HTTP on an address other hosts reach unless `insecure_plaintext` says so:
    /// bearer tokens would cross the network in clear.
    pub fn check_plaintext(&self) -> Result<(), String> {
        if let Listen::Tcp(addr) = &self.listen
            && !addr.ip().is_loopback()
            && self.tls.is_none()
            && !self.insecure_plaintext
        {
            return Err(format!(
                "listen {addr} is not a loopback address and no tls is configured: bearer tokens would cross the network in clear; configure tls = {{ cert, key }}, or write insecure_plaintext = true"
            ));
        }
        Ok(())
    }
}

/// Whether `text` can be a `Host` header value: a DNS name, an IPv4 address or `[IPv6]`, with
/// an optional port.
pub fn valid_host(text: &str) -> bool {
    let (host, port) = split_host_port(text);
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits `host[:port]` (`[v6]:port` too); the port is what follows the last colon outside
/// brackets.
pub fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.find(']') {
            Some(end) => match text[end + 1..].strip_prefix(':') {
                Some(port) => (&text[..=end], Some(port)),
                None => (text, None),
            },
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

/// A configuration that cannot be used: the file, and where in it when known.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Line and column (from 1; columns count characters).
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn plain(file: &Path, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            location: None,
            message,
        }
    }

    fn at(file: &Path, text: &str, span: std::ops::Range<usize>, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            location: Some(line_col(text, span.start)),
            message,
        }
    }
}

/// Line and column (from 1, columns in characters) of byte `offset` of `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before.get(start..).map(|s| s.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    agent: AgentToml,
    /// Read by [`HubConfig::from_toml_str`]; here only so that it is a known table.
    #[serde(default)]
    #[allow(dead_code)]
    hub: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentToml {
    listen: Option<Spanned<String>>,
    tls: Option<Spanned<TlsToml>>,
    tokens: Spanned<String>,
    policy: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    hub_sync_interval: Option<Spanned<String>>,
    call_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    idle_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    #[serde(default)]
    insecure_plaintext: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsToml {
    cert: String,
    key: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("/etc/faultline/agent.toml"))
    }

    #[test]
    fn reads_every_field_and_resolves_paths_against_the_file() {
        let c = parse(
            "[agent]\nlisten = \"10.0.0.1:7787\"\ntls = { cert = \"cert.pem\", key = \"/k/key.pem\" }\ntokens = \"tokens.toml\"\npolicy = \"policy.toml\"\nallowed_hosts = [\"Agent-1.internal\"]\nlabels = { zone = \"a\" }\nhub_sync_interval = \"5m\"\ncall_timeout = \"3s\"\nmax_connections = 8\nidle_timeout = \"2s\"\n[hub]\nrequired_signatures = 0\n",
        )
        .unwrap();
        assert_eq!(c.listen, Listen::Tcp("10.0.0.1:7787".parse().unwrap()));
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/etc/faultline/cert.pem"));
        assert_eq!(tls.key, Path::new("/k/key.pem"));
        assert_eq!(c.tokens, Path::new("/etc/faultline/tokens.toml"));
        assert_eq!(c.policy.unwrap(), Path::new("/etc/faultline/policy.toml"));
        assert_eq!(c.allowed_hosts, ["agent-1.internal"]);
        assert_eq!(c.labels["zone"], "a");
        assert_eq!(c.hub_sync_interval, Duration::from_secs(300));
        assert_eq!(c.call_timeout, Duration::from_secs(3));
        assert_eq!(c.max_connections, 8);
        assert_eq!(c.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.hub.required_signatures, Some(0));
    }

    #[test]
    fn defaults_to_loopback_and_unix_paths_are_relative_to_the_file() {
        let c = parse("[agent]\ntokens = \"t.toml\"\n").unwrap();
        assert_eq!(c.listen, Listen::Tcp("127.0.0.1:7787".parse().unwrap()));
        assert_eq!(c.max_connections, 256);
        let c = parse("[agent]\nlisten = \"unix:run/a.sock\"\ntokens = \"t.toml\"\n").unwrap();
        assert_eq!(c.listen, Listen::Unix("/etc/faultline/run/a.sock".into()));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("[agent]\ntokens = \"t\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/faultline/agent.toml:3:1: "), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = parse("[agent]\ntokens = \"t\"\ncall_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "/etc/faultline/agent.toml:3:16: call_timeout \"soon\" is not a duration"
            ),
            "{e}"
        );
        let e = parse("[agent]\nlisten = \"somewhere\"\ntokens = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:10: listen \"somewhere\" is neither"), "{e}");
        let e = parse("[agent]\nlisten = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `tokens`"), "{e}");
        let e = parse("[agent]\ntokens = \"t\"\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":3:19: max_connections 0 is outside 1 to 65536"),
            "{e}"
        );
        let e = parse("[agent]\ntokens = \"t\"\nallowed_hosts = [\"evil/x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:18: allowed_hosts entry \"evil/x\""), "{e}");
        let e = parse("[agent]\ntokens = \"t\"\n[hub]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[hub]") && e.contains("bogus"), "{e}");
        let e = parse("[agent]\ntokens = \"t\"\nhub_sync_interval = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside 10s to 24h"), "{e}");
    }

    #[test]
    fn plain_http_off_loopback_needs_tls_or_the_words_insecure_plaintext() {
        let e = parse("[agent]\nlisten = \"0.0.0.0:7787\"\ntokens = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:10: listen 0.0.0.0:7787 is not a loopback address and no tls"),
            "{e}"
        );
        assert!(
            parse(
                "[agent]\nlisten = \"0.0.0.0:7787\"\ntokens = \"t\"\ninsecure_plaintext = true\n"
            )
            .is_ok()
        );
        assert!(parse("[agent]\nlisten = \"[::1]:7787\"\ntokens = \"t\"\n").is_ok());
        assert!(parse("[agent]\nlisten = \"unix:/run/a.sock\"\ntokens = \"t\"\n").is_ok());
    }

    #[test]
    fn hosts_split_and_validate() {
        assert_eq!(split_host_port("a.b:80"), ("a.b", Some("80")));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("localhost"), ("localhost", None));
        assert!(
            valid_host("10.0.0.1:7787") && valid_host("[::1]") && valid_host("agent-1.internal")
        );
        assert!(
            !valid_host("a b") && !valid_host("x:99999") && !valid_host("") && !valid_host("[zz]")
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
