//! The guard [`super::server::serve`] puts in front of every request, before authentication:
//!
//! - `Host` must be a loopback name (`localhost`, `127.0.0.1`, `[::1]`, any port), the bound
//!   address, or one of `allowed_hosts`; anything else is a DNS-rebinding attempt or a
//!   misdirected request → 421.
//! - A state-changing method (anything but GET, HEAD, OPTIONS) with an `Origin` that is not
//!   `http(s)://<an allowed host>`, or with `Sec-Fetch-Site: cross-site` → 403: a web page the
//!   operator visits must not drive the agent.
//! - A request with a body that is not `Content-Type: application/json` → 415 (an HTML form
//!   cannot send JSON without a CORS preflight, which this agent never answers).
//! - A declared body over [`MAX_BODY`] → 413; and any 413 the stack below produces (a chunked
//!   body that grew too big) is answered as JSON too.
//!
//! - A body must arrive whole within [`BODY_DEADLINE`] ([`whole_body`]): a client trickling a
//!   byte just inside the per-chunk timeout cannot hold a connection slot for long → 408.
//!
//! No CORS header is ever sent. Every refusal is `{"error": "..."}` naming the problem.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest request body accepted: experiment files are at most 1 MiB.
pub const MAX_BODY: usize = 4 << 20;
/// The longest a request body may take to arrive, whole (4 MiB on loopback takes milliseconds).
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest `Host`/`Origin` value looked at.
const MAX_HOST: usize = 300;

/// Which hosts the guard accepts.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Lowercased names or addresses, with or without a port.
    allowed: Vec<String>,
    /// The bound TCP address, when the listener is TCP.
    bound: Option<SocketAddr>,
}

impl Guard {
    /// A guard for a listener bound at `bound` accepting `allowed_hosts` besides loopback.
    pub fn new(allowed_hosts: &[String], bound: Option<SocketAddr>) -> Guard {
        Guard {
            allowed: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            bound,
        }
    }

    /// Whether `host` (a `Host` header value or the authority of an `Origin`) is served here.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = super::config::split_host_port(&host);
        if port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return false;
        }
        if matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
            return true;
        }
        if let Some(bound) = self.bound {
            let ip = match bound {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            // The bound address when it is specific (0.0.0.0 names no host a client types).
            if !bound.ip().is_unspecified()
                && name == ip
                && port.is_none_or(|p| p == bound.port().to_string())
            {
                return true;
            }
        }
        self.allowed.iter().any(|allowed| {
            let (a_name, a_port) = super::config::split_host_port(allowed);
            a_name == name && (a_port.is_none() || a_port == port)
        })
    }

    /// The refusal for this request, if any.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Option<ApiError> {
        let host = headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{fffd}"));
        match host {
            None => {
                return Some(ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "the request has no Host header; HTTP/1.1 needs one, naming this agent",
                ));
            }
            Some(h) if h.len() > MAX_HOST || !self.allows(h) => {
                return Some(ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "host {:?} is not served here (DNS rebinding?): use localhost, the listen address, or add it to allowed_hosts in agent.toml",
                        shown(h)
                    ),
                ));
            }
            Some(_) => {}
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let text = origin.to_str().unwrap_or("\u{fffd}");
                let authority = text
                    .strip_prefix("http://")
                    .or_else(|| text.strip_prefix("https://"));
                let same = authority
                    .is_some_and(|a| !a.contains('/') && a.len() <= MAX_HOST && self.allows(a));
                if !same {
                    return Some(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "{method} from origin {:?} is refused: a cross-origin page may not change this agent",
                            shown(text)
                        ),
                    ));
                }
            }
            if headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
            {
                return Some(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{method} with Sec-Fetch-Site: cross-site is refused: a cross-site page may not change this agent"
                    ),
                ));
            }
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let has_body =
            length.is_some_and(|l| l > 0) || headers.contains_key(header::TRANSFER_ENCODING);
        if has_body {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
            if !json {
                let given = headers
                    .get(header::CONTENT_TYPE)
                    .map(|v| format!("{:?}", shown(v.to_str().unwrap_or("\u{fffd}"))))
                    .unwrap_or_else(|| "none".into());
                return Some(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("a request body must be Content-Type: application/json (got {given})"),
                ));
            }
        }
        if let Some(l) = length
            && l > MAX_BODY as u64
        {
            return Some(too_large());
        }
        None
    }
}

/// The 413 answer.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over the limit of {} MiB (experiment files are at most 1 MiB)",
            MAX_BODY >> 20
        ),
    )
}

/// A caller's text, cut short and without control characters.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Middleware: refuses what [`Guard::check`] refuses, and answers any 413 from below as JSON.
pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if let Some(refusal) = guard.check(request.method(), request.headers()) {
        return refusal.into_response();
    }
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return too_large().into_response();
    }
    response
}

/// Middleware: reads the request body whole within [`BODY_DEADLINE`] before the handler runs
/// (408 past it; 413 past [`MAX_BODY`]), so no handler waits on a slow client's body.
pub async fn whole_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let chain =
                || std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
            if chain().any(|c| c.is::<http_body_util::LengthLimitError>()) {
                return too_large().into_response();
            }
            let status = if chain().any(|c| c.is::<tower_http::timeout::TimeoutError>()) {
                StatusCode::REQUEST_TIMEOUT
            } else {
                StatusCode::BAD_REQUEST
            };
            return ApiError::new(status, format!("cannot read the request body: {e}"))
                .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hosts_loopback_bound_and_allowed_only() {
        let g = Guard::new(
            &["Agent-1.internal".into(), "10.1.1.1:80".into()],
            Some("10.0.0.5:7787".parse().unwrap()),
        );
        for ok in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1:7787",
            "[::1]:9",
            "10.0.0.5:7787",
            "10.0.0.5",
            "agent-1.internal:7787",
            "10.1.1.1:80",
        ] {
            assert!(g.allows(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "10.0.0.5:1",
            "10.1.1.1:81",
            "127.0.0.2",
            "localhost.attacker.example",
            "localhost:x",
            "",
        ] {
            assert!(!g.allows(bad), "{bad}");
        }
        assert!(!Guard::new(&[], Some("0.0.0.0:7787".parse().unwrap())).allows("0.0.0.0:7787"));
    }

    #[test]
    fn refusals_in_order_host_origin_type_size() {
        let g = Guard::new(&[], Some("127.0.0.1:7787".parse().unwrap()));
        let e = g
            .check(&Method::GET, &headers(&[("host", "attacker.example")]))
            .unwrap();
        assert_eq!(e.status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            e.message
                .contains("\"attacker.example\" is not served here (DNS rebinding?)"),
            "{}",
            e.message
        );
        assert_eq!(g.check(&Method::GET, &headers(&[])).unwrap().status, 421);
        let e = g
            .check(
                &Method::POST,
                &headers(&[("host", "localhost"), ("origin", "https://evil.example")]),
            )
            .unwrap();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(
            g.check(
                &Method::POST,
                &headers(&[("host", "localhost"), ("origin", "null")])
            )
            .unwrap()
            .status,
            403
        );
        assert_eq!(
            g.check(
                &Method::DELETE,
                &headers(&[("host", "localhost"), ("sec-fetch-site", "cross-site")])
            )
            .unwrap()
            .status,
            403
        );
        // A read from a foreign origin is not refused here (no CORS header lets the page read it).
        assert!(
            g.check(
                &Method::GET,
                &headers(&[("host", "localhost"), ("origin", "https://evil.example")])
            )
            .is_none()
        );
        assert!(
            g.check(
                &Method::POST,
                &headers(&[
                    ("host", "localhost:7787"),
                    ("origin", "http://localhost:7787")
                ])
            )
            .is_none()
        );
        let e = g
            .check(
                &Method::POST,
                &headers(&[
                    ("host", "localhost"),
                    ("content-length", "3"),
                    ("content-type", "text/plain"),
                ]),
            )
            .unwrap();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.message.contains("\"text/plain\""), "{}", e.message);
        assert!(
            g.check(
                &Method::POST,
                &headers(&[
                    ("host", "localhost"),
                    ("content-length", "3"),
                    ("content-type", "application/json; charset=utf-8")
                ])
            )
            .is_none()
        );
        assert!(
            g.check(
                &Method::POST,
                &headers(&[("host", "localhost"), ("content-length", "0")])
            )
            .is_none()
        );
        let e = g
            .check(
                &Method::POST,
                &headers(&[
                    ("host", "localhost"),
                    ("content-length", "5242880"),
                    ("content-type", "application/json"),
                ]),
            )
            .unwrap();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
