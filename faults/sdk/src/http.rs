//! HTTP requests for probes, through `wasi:http/outgoing-handler`: the host checks the
//! destination against the operator's policy, sends, and streams the response back. One call,
//! one exchange, blocking.
//!
//! What goes wrong is sorted by verdict ([`Failure`]): a request the policy denies or that
//! cannot be made means the probe could not judge (an [`Error`], *not applicable*); a server
//! that refuses, times out or breaks off fails the check.
//!
//! ```
//! # #[cfg(feature = "probe")] mod example {
//! use faultline_sdk::{Error, Outcome, http};
//! use std::time::Duration;
//!
//! fn check(url: &str) -> Result<Outcome, Error> {
//!     let parsed = http::Url::parse(url).map_err(|e| Error::invalid(format!("url: {e}")))?;
//!     let request = http::Request::get(parsed, Duration::from_secs(5));
//!     let response = match http::send(&request, 64 * 1024, http::Rest::Stop) {
//!         Ok(r) => r,
//!         Err(failure) => return failure.outcome(url),
//!     };
//!     Ok(Outcome {
//!         ok: response.status == 200,
//!         message: format!("status {} in {:?}", response.status, response.elapsed),
//!         value: None,
//!     })
//! }
//! # }
//! ```

// With the mock host, requests go to it and the wasi:http half below is not used.
#![cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32"), not(doc)),
    allow(dead_code, unused_imports)
)]

use crate::{Error, Outcome};
use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    self as wasi, ErrorCode, Fields, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// An `http://` or `https://` URL, split as the request needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https://` (TLS; the host always verifies the certificate) rather than `http://`.
    pub https: bool,
    /// `host[:port]`, without user-info.
    pub authority: String,
    /// The path and query, as written; `/` when the URL has none.
    pub path: String,
}

impl Url {
    /// Splits `http[s]://authority/path?query`, or says why not (quoting `text`).
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(format!("{text:?} has no host, or has user-info"));
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// An HTTP method, upper-case: `GET`, `POST`, … or any other token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method(Cow<'static, str>);

impl Method {
    /// `GET`.
    pub const GET: Method = Method(Cow::Borrowed("GET"));

    /// Reads a method in any case (`get`, `PATCH`, `PURGE`), or says why not (quoting `text`).
    pub fn parse(text: &str) -> Result<Method, String> {
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!("{text:?} is not an HTTP method"));
        }
        Ok(Method(Cow::Owned(text.to_ascii_uppercase())))
    }

    /// The method as sent (`GET`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn wasi(&self) -> wasi::Method {
        match self.as_str() {
            "GET" => wasi::Method::Get,
            "HEAD" => wasi::Method::Head,
            "POST" => wasi::Method::Post,
            "PUT" => wasi::Method::Put,
            "DELETE" => wasi::Method::Delete,
            "CONNECT" => wasi::Method::Connect,
            "OPTIONS" => wasi::Method::Options,
            "TRACE" => wasi::Method::Trace,
            "PATCH" => wasi::Method::Patch,
            other => wasi::Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request, made once and sent as often as asked.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Where to.
    pub url: Url,
    /// Headers, name and value; names are sent lower-case. The host sets `host`,
    /// `connection` and the like itself and refuses them here.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
    /// The longest wait for the connection, for the first byte of the response and between
    /// its bytes (each, not in total).
    pub timeout: Duration,
}

impl Request {
    /// A `GET` without headers or body.
    pub fn get(url: Url, timeout: Duration) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: Vec::new(),
            timeout,
        }
    }
}

/// What [`send`] does with a response body longer than the bytes it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// Reads it to the end and drops it: `elapsed` covers the whole response, and a body
    /// longer than the host's cap is a [`Failure::Service`].
    Drain,
    /// Stops reading at once (the host drops the rest): for a probe that does not judge a
    /// body it cannot keep whole.
    Stop,
}

/// A response: its status, the first bytes of its body, and how long it took.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// At most the `keep` bytes asked of [`send`], from the start of the body.
    pub body: Vec<u8>,
    /// Whether the body was longer than `body`.
    pub cut: bool,
    /// From sending the request to the end of the body read (the whole body with
    /// [`Rest::Drain`]).
    pub elapsed: Duration,
}

/// Why an exchange got no usable response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The host denied it; the reason names the policy rule. The probe cannot run.
    Denied(String),
    /// The request cannot be made as given. The probe cannot run.
    Invalid(String),
    /// The service refused, timed out or broke off: the check fails.
    Service(String),
}

impl Failure {
    /// The service's failure, for the check's message; the host's refusal ([`Failure::Denied`],
    /// [`Failure::Invalid`]) as the probe's [`Error`], whatever the service would have said.
    pub fn service(self) -> Result<String, Error> {
        match self {
            Failure::Denied(why) => Err(Error::Denied(why)),
            Failure::Invalid(why) => Err(Error::Invalid(why)),
            Failure::Service(why) => Ok(why),
        }
    }

    /// The probe's verdict: a failed [`Outcome`] saying `"{about}: {why}"` for the service's
    /// failure, an [`Error`] (not applicable) for the host's refusal.
    pub fn outcome(self, about: &str) -> Result<Outcome, Error> {
        let why = self.service()?;
        Ok(Outcome {
            ok: false,
            message: format!("{about}: {why}"),
            value: None,
        })
    }
}

/// Sends `request` once and reads the response, keeping its status and up to `keep` bytes
/// of its body; `rest` says what becomes of a longer body.
pub fn send(request: &Request, keep: usize, rest: Rest) -> Result<Response, Failure> {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
    {
        let _ = rest;
        let mut response = crate::testing::host::http_send(request)?;
        if response.body.len() > keep {
            response.body.truncate(keep);
            response.cut = true;
        }
        Ok(response)
    }
    #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"), not(doc))))]
    send_wasi(request, keep, rest)
}

/// [`send`] through `wasi:http`.
#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"), not(doc))))]
fn send_wasi(request: &Request, keep: usize, rest: Rest) -> Result<Response, Failure> {
    let start = Instant::now();
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&headers).map_err(|e| {
        Failure::Invalid(format!(
            "headers: {e:?} (host, connection and the like are set by the host)"
        ))
    })?;
    let outgoing = OutgoingRequest::new(headers);
    let scheme = if request.url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let set = outgoing
        .set_method(&request.method.wasi())
        .and(outgoing.set_scheme(Some(&scheme)))
        .and(outgoing.set_authority(Some(&request.url.authority)))
        .and(outgoing.set_path_with_query(Some(&request.url.path)));
    if set.is_err() {
        return Err(Failure::Invalid(format!(
            "{} is not a valid request",
            request.url
        )));
    }
    let body = outgoing
        .body()
        .map_err(|()| Failure::Service("the request body was taken".into()))?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(request.timeout.as_nanos()).unwrap_or(u64::MAX);
    // A refused setting leaves the host's default, which its deadline for the call bounds.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(failure)?;
    write_body(&body, &request.body)?;
    OutgoingBody::finish(body, None).map_err(failure)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(failure(code)),
        Some(Err(())) | None => {
            return Err(Failure::Service("the response was already taken".into()));
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| Failure::Service("the response body was taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| Failure::Service("the response body stream was taken".into()))?;
    let mut kept = Vec::new();
    let mut cut = false;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                let room = keep.saturating_sub(kept.len());
                if chunk.len() > room {
                    cut = true;
                    kept.extend_from_slice(&chunk[..room]);
                    if rest == Rest::Stop {
                        break;
                    }
                } else {
                    kept.extend_from_slice(&chunk);
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let why = match wasi::http_error_code(&e) {
                    Some(code) => describe(&code),
                    None => e.to_debug_string(),
                };
                return Err(Failure::Service(format!("reading the body: {why}")));
            }
        }
    }
    Ok(Response {
        status,
        body: kept,
        cut,
        elapsed: start.elapsed(),
    })
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Failure> {
    if bytes.is_empty() {
        return Ok(());
    }
    let out = body
        .write()
        .map_err(|()| Failure::Service("the request body stream was taken".into()))?;
    for chunk in bytes.chunks(4096) {
        out.blocking_write_and_flush(chunk)
            .map_err(|e| Failure::Service(format!("sending the body: {e:?}")))?;
    }
    Ok(())
}

/// The host reports a denial as `internal-error("denied: …")` naming the rule, and a request
/// it cannot make as `internal-error("invalid: …")`; everything else is the service's.
fn failure(code: ErrorCode) -> Failure {
    match &code {
        ErrorCode::InternalError(Some(text)) if text.starts_with("denied: ") => {
            Failure::Denied(text["denied: ".len()..].to_string())
        }
        ErrorCode::InternalError(Some(text)) if text.starts_with("invalid: ") => {
            Failure::Invalid(text["invalid: ".len()..].to_string())
        }
        _ => Failure::Service(describe(&code)),
    }
}

/// An error code in words.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        // The host's code for a connection, or a first byte, that did not come in time.
        ErrorCode::ConnectionTimeout => "timed out".into(),
        ErrorCode::ConnectionReadTimeout => "timed out reading the response".into(),
        ErrorCode::TlsCertificateError => "TLS certificate did not verify".into(),
        ErrorCode::TlsProtocolError => "TLS handshake failed".into(),
        ErrorCode::HttpResponseBodySize(Some(n)) => {
            format!("the response body is longer than the host's cap of {n} bytes")
        }
        ErrorCode::DnsError(e) => format!("DNS: {}", e.rcode.clone().unwrap_or_default()),
        ErrorCode::InternalError(Some(text)) => text.clone(),
        other => format!("{other:?}"),
    }
}
