//! Reading indexes and components from the bundled hub, local files and http(s), with size
//! caps, timeouts and ETag revalidation. File reads go through `tokio::fs`, so no async worker
//! waits on the disk.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use sha2::{Digest as _, Sha256};

use super::source::Location;
use super::{Digest, HubError};

/// What a conditional GET returned.
#[derive(Debug)]
pub(crate) enum Response {
    /// The server says the copy with the ETag we sent is current (HTTP 304).
    NotModified,
    /// The document, with its ETag if the server sent one.
    Body {
        /// The bytes.
        bytes: Vec<u8>,
        /// The ETag header.
        etag: Option<String>,
    },
}

/// Reads documents and components.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    offline: bool,
}

impl Fetcher {
    /// A fetcher with a per-request time limit; when `offline`, http locations are refused.
    pub(crate) fn new(timeout: Duration, offline: bool) -> Result<Self, HubError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Fetcher { client, offline })
    }

    /// Whether http locations are refused.
    pub(crate) fn offline(&self) -> bool {
        self.offline
    }

    /// Reads a small document whole, at most `limit` bytes; `Ok(None)` when it does not exist
    /// (file not found, HTTP 404). `etag` makes an http GET conditional.
    pub(crate) async fn get(
        &self,
        location: &Location,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<Option<Response>, HubError> {
        let mut body = Vec::new();
        match location {
            Location::Bundled(url) => {
                Ok(super::bundled::artifact(url).map(|bytes| Response::Body {
                    bytes: bytes.to_vec(),
                    etag: None,
                }))
            }
            Location::Path(path) => {
                let file = match tokio::fs::File::open(path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(HubError::io(format!("opening {}", path.display()), e)),
                };
                file.take(limit.saturating_add(1))
                    .read_to_end(&mut body)
                    .await
                    .map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
                if body.len() as u64 > limit {
                    return Err(too_large(location, limit));
                }
                Ok(Some(Response::Body {
                    bytes: body,
                    etag: None,
                }))
            }
            Location::Http(url) => {
                let mut request = self.http(location)?.get(url.clone());
                if let Some(etag) = etag {
                    request = request.header(IF_NONE_MATCH, etag);
                }
                let mut response = request.send().await.map_err(|e| fetch_error(location, e))?;
                match response.status() {
                    StatusCode::NOT_MODIFIED if etag.is_some() => {
                        return Ok(Some(Response::NotModified));
                    }
                    StatusCode::NOT_FOUND => return Ok(None),
                    s if !s.is_success() => {
                        return Err(HubError::Fetch {
                            url: location.to_string(),
                            reason: format!("HTTP status {s}"),
                        });
                    }
                    _ => {}
                }
                if content_length(&response).is_some_and(|n| n > limit) {
                    return Err(too_large(location, limit));
                }
                let new_etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| fetch_error(location, e))?
                {
                    body.extend_from_slice(&chunk);
                    if body.len() as u64 > limit {
                        return Err(too_large(location, limit));
                    }
                }
                Ok(Some(Response::Body {
                    bytes: body,
                    etag: new_etag,
                }))
            }
        }
    }

    /// Copies a component into `out` (flushed when this returns), hashing as it goes; refuses
    /// more than `expected_size` bytes (`what` names the release in errors). Returns the digest
    /// and size received.
    pub(crate) async fn download(
        &self,
        location: &Location,
        out: &mut tokio::fs::File,
        expected_size: u64,
        what: &str,
    ) -> Result<(Digest, u64), HubError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let oversize = |actual: u64| HubError::SizeMismatch {
            what: format!("{what} from {location}"),
            expected: expected_size,
            actual,
        };
        let write_err = |e| HubError::io(format!("writing download of {what}"), e);
        match location {
            Location::Bundled(url) => {
                let bytes = super::bundled::artifact(url).ok_or_else(|| HubError::Fetch {
                    url: location.to_string(),
                    reason: "not embedded in this binary".into(),
                })?;
                size = bytes.len() as u64;
                if size > expected_size {
                    return Err(oversize(size));
                }
                hasher.update(bytes);
                out.write_all(bytes).await.map_err(write_err)?;
            }
            Location::Path(path) => {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| HubError::Fetch {
                        url: location.to_string(),
                        reason: e.to_string(),
                    })?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| HubError::io(format!("reading {}", path.display()), e))?
                    .len();
                if len > expected_size {
                    return Err(oversize(len));
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
                    if n == 0 {
                        break;
                    }
                    size += n as u64;
                    if size > expected_size {
                        return Err(oversize(size));
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n]).await.map_err(write_err)?;
                }
            }
            Location::Http(url) => {
                let mut response = self
                    .http(location)?
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| fetch_error(location, e))?;
                if !response.status().is_success() {
                    return Err(HubError::Fetch {
                        url: location.to_string(),
                        reason: format!("HTTP status {}", response.status()),
                    });
                }
                if let Some(len) = content_length(&response).filter(|n| *n > expected_size) {
                    return Err(oversize(len));
                }
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| fetch_error(location, e))?
                {
                    size += chunk.len() as u64;
                    if size > expected_size {
                        return Err(oversize(size));
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk).await.map_err(write_err)?;
                }
            }
        }
        // tokio's file hands writes to a blocking thread: only a flush says they are done.
        out.flush().await.map_err(write_err)?;
        Ok((Digest::from_hasher(hasher), size))
    }

    fn http(&self, location: &Location) -> Result<&reqwest::Client, HubError> {
        if self.offline {
            return Err(HubError::NotCached {
                what: location.to_string(),
            });
        }
        Ok(&self.client)
    }
}

fn content_length(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn too_large(location: &Location, limit: u64) -> HubError {
    HubError::TooLarge {
        url: location.to_string(),
        limit,
    }
}

fn fetch_error(location: &Location, e: reqwest::Error) -> HubError {
    let reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    };
    HubError::Fetch {
        url: location.to_string(),
        reason,
    }
}
