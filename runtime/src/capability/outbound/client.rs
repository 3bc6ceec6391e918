//! The host's one HTTP client, shared by every probe and reused across calls: a pooled
//! `hyper-util` client whose connections go only to addresses the policy was checked against.
//!
//! A request by name is resolved once, here; each resolved address is checked against the
//! grants and the agent's own endpoints, and the request is sent to an address that passed,
//! never re-resolved (no DNS rebinding between the check and the connect). The URI handed to
//! the pool names that address, so a pooled connection is only ever reused for the very address
//! a request checked. For `https` the URI also carries the server name in its user-info part
//! (`https://api.example.org@10.0.0.7:443/`): the pool then keys TLS connections by name *and*
//! address, and the TLS connector verifies the certificate for that name (webpki roots,
//! verification always on). Redirects are never followed. Response bodies stream through a cap
//! and a between-bytes timeout; request bodies are bounded too.

use crate::policy::Grants;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

/// Errors inside request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body as the client sends it.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// At most this many addresses of one name are considered.
const MAX_ADDRESSES: usize = 16;
/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sizes the client enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes of one response body handed to a guest; the body ends in an error past it.
    pub response_body: u64,
    /// The most bytes of one request body sent.
    pub request_body: u64,
}

impl Default for Limits {
    /// 16 MiB of response body, 1 MiB of request body.
    fn default() -> Limits {
        Limits {
            response_body: 16 << 20,
            request_body: 1 << 20,
        }
    }
}

/// How long each stage of one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To resolve, connect and hand over the request.
    pub connect: Duration,
    /// From the request to the response head.
    pub first_byte: Duration,
    /// Between two frames of the response body.
    pub between_bytes: Duration,
}

impl Timeouts {
    /// Each stage at most `limit` (and at least 1 ms), so no stage outlives the call that asked.
    pub fn within(self, limit: Duration) -> Timeouts {
        let cap = |d: Duration| d.min(limit).max(Duration::from_millis(1));
        Timeouts {
            connect: cap(self.connect),
            first_byte: cap(self.first_byte),
            between_bytes: cap(self.between_bytes),
        }
    }

    /// Every stage `d`.
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            first_byte: d,
            between_bytes: d,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The policy does not allow the destination; the reason names the rule.
    #[error("denied: {0}")]
    Denied(String),
    /// The request itself is malformed (scheme, URI).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The name did not resolve.
    #[error("{0}")]
    Dns(String),
    /// The peer refused the connection.
    #[error("{0}")]
    Refused(String),
    /// A stage took longer than allowed.
    #[error("{0}")]
    Timeout(String),
    /// The TLS handshake failed (the certificate did not verify, say).
    #[error("{0}")]
    Tls(String),
    /// The request body was longer than allowed.
    #[error("the request body is longer than {0} bytes")]
    RequestBodyTooLarge(u64),
    /// Anything else on the way.
    #[error("{0}")]
    Failed(String),
}

/// Why a response body ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// It passed the cap.
    #[error("the response body is longer than the host's cap of {0} bytes")]
    TooLarge(u64),
    /// No frame came within the between-bytes timeout.
    #[error("no response data for {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("reading the response body: {0}")]
    Failed(String),
}

/// The host's outbound client and what it never reaches.
pub struct Outbound {
    client: Pooled<HttpsConnector<HttpConnector>, RequestBody>,
    protected: RwLock<Vec<SocketAddr>>,
    limits: Limits,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The TLS server name a URI built by [`Outbound::send`] carries: its user-info, else its host
/// (an address literal).
fn server_name(uri: &http::Uri) -> Result<rustls::pki_types::ServerName<'static>, BoxError> {
    let authority = uri.authority().ok_or("the URI has no authority")?.as_str();
    let name = match authority.rsplit_once('@') {
        Some((name, _)) => name.to_string(),
        None => {
            let host = uri.host().unwrap_or_default();
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        }
    };
    rustls::pki_types::ServerName::try_from(name).map_err(|e| Box::new(e) as BoxError)
}

impl Outbound {
    /// The client, with webpki's roots (and `extra_roots`, the operator's own CAs) and an idle
    /// pool.
    pub fn new(
        limits: Limits,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Outbound, rustls::Error> {
        let mut http = HttpConnector::new();
        // `https` URIs reach this connector too; the TLS layer above wraps them.
        http.enforce_http(false);
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra_roots {
            roots.add(cert.clone())?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(server_name)
            .enable_http1()
            .wrap_connector(http);
        let client = Pooled::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Outbound {
            client,
            protected: RwLock::default(),
            limits,
        })
    }

    /// The sizes this client enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Makes `addr` (the agent's API, say) unreachable for every probe, whatever the policy
    /// grants. An unspecified address (`0.0.0.0:7070`) protects that port on every address.
    pub fn protect(&self, addr: SocketAddr) {
        if let Ok(mut p) = self.protected.write() {
            p.push(addr);
        }
    }

    /// Why `addr` is never reachable, if it is not.
    fn never_reachable(&self, addr: SocketAddr) -> Option<String> {
        let ip = crate::policy::scope::canonical_ip(addr.ip());
        if ip.is_unspecified() {
            return Some(format!("{ip} means this host: never reachable"));
        }
        let protected = match self.protected.read() {
            Ok(p) => p.clone(),
            // A poisoned list cannot be trusted: refuse rather than let the agent be reached.
            Err(_) => return Some("the host's list of protected endpoints is unreadable".into()),
        };
        protected
            .iter()
            .find(|p| {
                let pip = crate::policy::scope::canonical_ip(p.ip());
                p.port() == addr.port() && (pip == ip || pip.is_unspecified())
            })
            .map(|p| format!("{addr} is the agent's own API ({p}): never reachable"))
    }

    /// Checks one connection: not a protected endpoint, and inside one grant's outbound scope.
    /// The error is the denial, naming the rules.
    pub fn check(
        &self,
        grants: &Grants,
        name: Option<&str>,
        addr: SocketAddr,
    ) -> Result<(), String> {
        if let Some(why) = self.never_reachable(addr) {
            return Err(why);
        }
        if grants.outbound.iter().any(|s| s.scope.allows(name, addr)) {
            return Ok(());
        }
        let what = match name {
            Some(n) => format!("{n} ({addr})"),
            None => addr.to_string(),
        };
        Err(outside(grants, &what))
    }

    /// Resolves `host` (a name or an address literal) and keeps the addresses the grants allow,
    /// in resolver order; denied when none is. Never called twice for one connection.
    pub async fn resolve(
        &self,
        grants: &Grants,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, SendError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, port);
            return self
                .check(grants, None, addr)
                .map(|()| vec![addr])
                .map_err(SendError::Denied);
        }
        // A name no grant lets through is denied before any DNS query leaves the host.
        if !grants
            .outbound
            .iter()
            .any(|s| s.scope.name_allowed(Some(host)))
        {
            return Err(SendError::Denied(outside(grants, host)));
        }
        let lookup = tokio::net::lookup_host((host, port));
        let found: Vec<SocketAddr> =
            match tokio::time::timeout(timeout.min(RESOLVE_TIMEOUT), lookup).await {
                Ok(Ok(addrs)) => addrs.take(MAX_ADDRESSES).collect(),
                Ok(Err(e)) => return Err(SendError::Dns(format!("cannot resolve {host}: {e}"))),
                Err(_) => return Err(SendError::Timeout(format!("resolving {host} timed out"))),
            };
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for addr in found {
            match self.check(grants, Some(host), addr) {
                Ok(()) => allowed.push(addr),
                Err(why) => denied.push(why),
            }
        }
        if allowed.is_empty() {
            return Err(SendError::Denied(match denied.first() {
                Some(why) => why.clone(),
                None => format!("{host} resolves to no address"),
            }));
        }
        Ok(allowed)
    }

    /// Sends `request` (absolute URI) to a checked address of its host and returns the response
    /// head; its body streams through the cap.
    pub async fn send(
        &self,
        grants: &Grants,
        mut request: http::Request<RequestBody>,
        timeouts: Timeouts,
    ) -> Result<http::Response<Capped>, SendError> {
        let uri = request.uri().clone();
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => {
                return Err(SendError::Invalid(format!(
                    "{uri}: scheme {} is not http or https",
                    other.unwrap_or("(none)")
                )));
            }
        };
        let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else {
            return Err(SendError::Invalid(format!("{uri} names no host")));
        };
        if authority.as_str().contains('@') {
            return Err(SendError::Invalid(format!(
                "{uri}: user-info in a URL is refused"
            )));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let start = Instant::now();
        let addrs = self.resolve(grants, host, port, timeouts.connect).await?;
        let target = addrs[0];
        let is_name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_err();
        let userinfo = if https && is_name {
            format!("{host}@")
        } else {
            String::new()
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let checked = format!(
            "{}://{userinfo}{target}{path}",
            if https { "https" } else { "http" }
        );
        *request.uri_mut() = checked
            .parse()
            .map_err(|e| SendError::Invalid(format!("{uri}: {e}")))?;
        // The peer sees the name that was asked for, never the address or the user-info.
        let host_header = http::HeaderValue::from_str(authority.as_str())
            .map_err(|e| SendError::Invalid(format!("{uri}: {e}")))?;
        request
            .headers_mut()
            .insert(http::header::HOST, host_header);
        let limit = self.limits.request_body;
        let request = request.map(|b| {
            http_body_util::Limited::new(b, usize::try_from(limit).unwrap_or(usize::MAX))
                .boxed_unsync()
        });
        let wait = timeouts.connect.saturating_sub(start.elapsed()) + timeouts.first_byte;
        let response = match tokio::time::timeout(wait, self.client.request(request)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(classify(&uri, target, &e, limit)),
            Err(_) => {
                return Err(SendError::Timeout(format!(
                    "{uri} ({target}): no response within {wait:?}"
                )));
            }
        };
        let cap = self.limits.response_body;
        Ok(response.map(|incoming| Capped::new(incoming, cap, timeouts.between_bytes)))
    }
}

/// The denial of `what`, naming the rules consulted.
fn outside(grants: &Grants, what: &str) -> String {
    format!(
        "{what} is outside the outbound scope granted to {} ({})",
        grants.component,
        grants.rules_text()
    )
}

/// Names what went wrong with a request from the error chain hyper and rustls left.
fn classify(
    uri: &http::Uri,
    target: SocketAddr,
    e: &hyper_util::client::legacy::Error,
    request_limit: u64,
) -> SendError {
    let mut text = format!("{uri} ({target}): {e}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut kind = None;
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        if s.downcast_ref::<rustls::Error>().is_some() {
            kind = Some("tls");
        } else if s
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return SendError::RequestBodyTooLarge(request_limit);
        } else if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if wraps_tls(io) {
                kind = Some("tls");
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => kind = kind.or(Some("refused")),
                std::io::ErrorKind::TimedOut => kind = kind.or(Some("timeout")),
                _ => {}
            }
        }
        source = s.source();
    }
    match kind {
        Some("tls") => SendError::Tls(text),
        Some("refused") => SendError::Refused(text),
        Some("timeout") => SendError::Timeout(text),
        _ => SendError::Failed(text),
    }
}

/// Whether an I/O error carries a rustls error. `io::Error::other(e)` hides `e` from
/// `source()`, and tokio-rustls and hyper-rustls each wrap once: look inside, a few levels deep.
fn wraps_tls(io: &std::io::Error) -> bool {
    let mut inner = io.get_ref();
    for _ in 0..4 {
        let Some(e) = inner else { return false };
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
    }
    false
}

/// A response body that ends in [`BodyError::TooLarge`] past its cap and in
/// [`BodyError::Timeout`] when no frame comes in time: frames pass through as they arrive,
/// nothing is buffered.
pub struct Capped {
    inner: hyper::body::Incoming,
    left: u64,
    cap: u64,
    between: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Capped {
    fn new(inner: hyper::body::Incoming, cap: u64, between: Duration) -> Capped {
        Capped {
            inner,
            left: cap,
            cap,
            between,
            timer: Box::pin(tokio::time::sleep(between)),
            done: false,
        }
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(BodyError::Failed(e.to_string()))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + this.between;
                this.timer.as_mut().reset(deadline);
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        // Past the cap: the connection is dropped with the body, not drained.
                        this.done = true;
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.cap))));
                    }
                    this.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    Poll::Ready(Some(Err(BodyError::Timeout(this.between))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::{Identity, Policy};

    fn grants(scope: &str) -> Grants {
        let p = Policy::parse(&format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"outbound\"]\noutbound = {{ {scope} }}\n"
        ))
        .unwrap();
        p.grants_for(&Identity::local("sha256:00"))
    }

    #[test]
    fn the_check_is_on_the_address_and_protected_endpoints_always_lose() {
        let o = Outbound::new(Limits::default(), &[]).unwrap();
        let g = grants(r#"destinations = ["127.0.0.0/8", "::1"], ports = ["8000-8100"]"#);
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(o.check(&g, None, at("127.0.0.1:8080")).is_ok());
        assert!(o.check(&g, Some("anything"), at("[::1]:8000")).is_ok());
        assert!(o.check(&g, None, at("[::ffff:127.0.0.9]:8001")).is_ok());
        let e = o.check(&g, Some("db"), at("10.0.0.1:8080")).unwrap_err();
        assert!(
            e.starts_with("db (10.0.0.1:8080) is outside the outbound scope"),
            "{e}"
        );
        assert!(e.contains("grant 1 (*)"), "{e}");
        assert!(o.check(&g, None, at("127.0.0.1:9000")).is_err());
        // Granted, but the agent's API: never.
        o.protect(at("127.0.0.1:8080"));
        let e = o.check(&g, None, at("127.0.0.1:8080")).unwrap_err();
        assert!(e.contains("the agent's own API"), "{e}");
        assert!(o.check(&g, None, at("[::ffff:127.0.0.1]:8080")).is_err());
        // Another loopback address on that port is another socket.
        assert!(o.check(&g, None, at("127.0.0.2:8080")).is_ok());
        // An agent on the unspecified address protects its port everywhere.
        o.protect(at("0.0.0.0:8090"));
        assert!(o.check(&g, None, at("127.0.0.5:8090")).is_err());
        assert!(o.check(&g, None, at("0.0.0.0:8000")).is_err());
        assert!(
            o.check(
                &grants(r#"destinations = ["0.0.0.0/0"]"#),
                None,
                at("0.0.0.0:1")
            )
            .is_err()
        );
    }

    #[test]
    fn stage_timeouts_never_outlive_the_call() {
        let t = Timeouts::all(Duration::from_secs(30)).within(Duration::from_millis(200));
        assert_eq!(t.connect, Duration::from_millis(200));
        assert_eq!(t.between_bytes, Duration::from_millis(200));
        let t = Timeouts::all(Duration::from_secs(1)).within(Duration::ZERO);
        assert_eq!(t.first_byte, Duration::from_millis(1));
    }
}
