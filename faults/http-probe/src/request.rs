//! One HTTP exchange through `wasi:http/outgoing-handler`, blocking: the host checks the
//! destination, sends, and streams the response body back.

use faultline_sdk::Error;
use std::collections::BTreeMap;
use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// Why an exchange got no usable response.
pub enum Failure {
    /// The host denied it: the probe cannot run.
    Denied(String),
    /// The request cannot be made as given: the probe cannot run.
    Invalid(String),
    /// The service refused, timed out or broke off: the check fails.
    Service(String),
}

/// A request, parsed once and sent as often as asked.
pub struct Exchange {
    method: Method,
    https: bool,
    authority: String,
    path: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Duration,
}

fn method(text: &str) -> Method {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        "TRACE" => Method::Trace,
        other => Method::Other(other.to_string()),
    }
}

impl Exchange {
    /// Parses `url` (`http[s]://authority/path?query`) and the rest.
    pub fn new(
        method_text: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Exchange, Error> {
        let bad = |why: &str| Error::Invalid(format!("url: {url:?} {why}"));
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("has no host, or user-info"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if method_text.is_empty() || !method_text.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(Error::Invalid(format!(
                "method: {method_text:?} is not an HTTP method"
            )));
        }
        if timeout.is_zero() {
            return Err(Error::Invalid("timeout: must be more than 0".into()));
        }
        Ok(Exchange {
            method: method(method_text),
            https,
            authority: authority.to_string(),
            path,
            url: url.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            timeout,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The method, as sent.
    pub fn method_name(&self) -> String {
        match &self.method {
            Method::Get => "GET".into(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(m) => m.clone(),
        }
    }

    /// Sends once; returns the status and up to `keep` bytes of the body (all of it is read).
    pub fn send(&self, keep: usize) -> Result<(u16, Vec<u8>), Failure> {
        let invalid = |why: String| Failure::Service(why);
        let headers = Fields::from_list(&self.headers).map_err(|e| {
            Failure::Invalid(format!(
                "headers: {e:?} (host, connection and the like are set by the host)"
            ))
        })?;
        let request = OutgoingRequest::new(headers);
        let scheme = if self.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let set = request
            .set_method(&self.method)
            .and(request.set_scheme(Some(&scheme)))
            .and(request.set_authority(Some(&self.authority)))
            .and(request.set_path_with_query(Some(&self.path)));
        if set.is_err() {
            return Err(Failure::Invalid(format!(
                "{} is not a valid request",
                self.url
            )));
        }
        let body = request
            .body()
            .map_err(|()| invalid("the request body was taken".into()))?;
        let options = RequestOptions::new();
        let nanos = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let pending = outgoing_handler::handle(request, Some(options)).map_err(failure)?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(failure)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(failure(code)),
            Some(Err(())) | None => return Err(invalid("the response was already taken".into())),
        };
        let status = response.status();
        let incoming = response
            .consume()
            .map_err(|()| invalid("the response body was taken".into()))?;
        let stream = incoming
            .stream()
            .map_err(|()| invalid("the response body stream was taken".into()))?;
        let mut kept = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    let room = keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let why = match wasip2::http::types::http_error_code(&e) {
                        Some(code) => describe(&code),
                        None => e.to_debug_string(),
                    };
                    return Err(Failure::Service(format!("reading the body: {why}")));
                }
            }
        }
        Ok((status, kept))
    }
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

/// A denial names the rule in `internal-error("denied: …")`; everything else is the service's.
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

fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
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
