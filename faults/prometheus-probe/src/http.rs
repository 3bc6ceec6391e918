//! One HTTP GET through `wasi:http/outgoing-handler`: the host checks the destination against
//! the policy, sends, and streams the body back; at most `keep` bytes of it are kept.

use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// Why a GET got no usable response.
pub enum Failure {
    /// The host denied it (the reason names the rule): the probe cannot run.
    Denied(String),
    /// The request cannot be made as given: the probe cannot run.
    Invalid(String),
    /// The server refused, timed out or broke off: the check fails.
    Service(String),
}

/// A response: its status and the first bytes of its body, and whether there was more.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub cut: bool,
}

/// `http://authority/path?query` split for the request, or why not.
pub fn split(url: &str) -> Result<(bool, String, String), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return Err(format!("{url:?} has no host, or has user-info"));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{url:?}: give the server's base URL, without a query"
        ));
    }
    Ok((
        https,
        authority.to_string(),
        path.trim_end_matches('/').to_string(),
    ))
}

/// GETs `path_with_query` from `authority`, waiting at most `timeout` for the connection and
/// for each part of the response.
pub fn get(
    https: bool,
    authority: &str,
    path_with_query: &str,
    timeout: Duration,
    keep: usize,
) -> Result<Response, Failure> {
    let headers = Fields::from_list(&[("accept".to_string(), b"application/json".to_vec())])
        .map_err(|e| Failure::Invalid(format!("headers: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let set = request
        .set_method(&Method::Get)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path_with_query)));
    if set.is_err() {
        return Err(Failure::Invalid(format!(
            "{authority}{path_with_query} is not a valid request"
        )));
    }
    let body = request
        .body()
        .map_err(|()| Failure::Service("the request body was taken".into()))?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let pending = outgoing_handler::handle(request, Some(options)).map_err(failure)?;
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
                    // More than we keep: stop reading, the host drops the rest.
                    kept.extend_from_slice(&chunk[..room]);
                    cut = true;
                    break;
                }
                kept.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let why = match wasip2::http::types::http_error_code(&e) {
                    Some(code) => describe(&code),
                    None => e.to_debug_string(),
                };
                return Err(Failure::Service(format!("reading the response: {why}")));
            }
        }
    }
    Ok(Response {
        status,
        body: kept,
        cut,
    })
}

/// The host reports a denial as `internal-error("denied: …")`; everything else is the server's.
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
        ErrorCode::ConnectionTimeout => "timed out connecting".into(),
        ErrorCode::ConnectionReadTimeout => "timed out reading the response".into(),
        ErrorCode::TlsCertificateError => "TLS certificate did not verify".into(),
        ErrorCode::TlsProtocolError => "TLS handshake failed".into(),
        ErrorCode::DnsError(e) => format!("DNS: {}", e.rcode.clone().unwrap_or_default()),
        ErrorCode::InternalError(Some(text)) => text.clone(),
        other => format!("{other:?}"),
    }
}
