//! The `outbound` capability: a probe's network access, one way, checked one way.
//!
//! A probe granted `outbound` reaches the network through `wasi:http/outgoing-handler`
//! ([`http`]), `wasi:sockets` TCP and name lookup ([`socket_check`]), or the 0.1.0
//! `faultline:contract/outbound` interface (`tcp-connect`, `http-get`, kept for probes built
//! against 0.1.0). All three go through [`client::Outbound`]: one pooled HTTP client per host,
//! and one check of every connection against the address it goes to (the grants' outbound
//! scopes, and the agent's own endpoints, which are never reachable). UDP is never linked.
//!
//! | file | role |
//! |---|---|
//! | `client.rs` | the pooled client, name resolution and the address check, capped bodies |
//! | `http.rs` | the `wasi:http` hook that sends through the client |

pub mod client;
pub mod config;
pub mod http;

use super::{CapError, CapResult, Context, GuestResult, to_guest};
use crate::contract::outbound::{Host, HttpResponse};
use crate::policy::Grants;
use bytes::Bytes;
use client::{Outbound, SendError, Timeouts};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi::sockets::SocketAddrUse;

/// Bytes of a body `http-get` returns (the 0.1.0 contract says 64 KiB).
const HTTP_GET_BODY: usize = 64 * 1024;

fn timeout(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms.clamp(1, 60_000)))
}

impl From<SendError> for CapError {
    fn from(e: SendError) -> CapError {
        match e {
            SendError::Denied(r) => CapError::Denied(r),
            SendError::Invalid(r) => CapError::Invalid(r),
            other => CapError::Failed(other.to_string()),
        }
    }
}

/// The `wasi:sockets` address check of a probe: a TCP connect must pass [`Outbound::check`];
/// the implicit bind of a connect (the wildcard address, port 0) passes; listening, explicit
/// binds and every UDP use are denied. A denial is `access-denied` to the guest and a warning
/// naming the rule in the log.
pub fn socket_check(
    grants: Arc<Grants>,
    outbound: Arc<Outbound>,
    execution: String,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>
+ Send
+ Sync
+ 'static {
    move |addr, purpose| {
        let verdict = match purpose {
            SocketAddrUse::TcpConnect => outbound.check(&grants, None, addr),
            SocketAddrUse::TcpBind if addr.ip().is_unspecified() && addr.port() == 0 => Ok(()),
            other => Err(format!(
                "{other:?} on {addr}: a probe only connects over TCP"
            )),
        };
        let ok = match verdict {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(execution = %execution, "denied: wasi:sockets: {why}");
                false
            }
        };
        Box::pin(async move { ok })
    }
}

impl Context {
    fn outbound(&self) -> CapResult<Arc<Outbound>> {
        self.backends
            .outbound
            .clone()
            .map_err(|e| CapError::Unsupported(format!("no outbound client on this host: {e}")))
    }
}

impl Host for Context {
    async fn tcp_connect(&mut self, host: String, port: u16, timeout_ms: u32) -> GuestResult<u64> {
        let r = async {
            let outbound = self.outbound()?;
            let limit = timeout(timeout_ms);
            let start = Instant::now();
            // Resolved and checked once; the connect goes to the checked address only.
            let addrs = outbound.resolve(&self.grants, &host, port, limit).await?;
            let left = limit.saturating_sub(start.elapsed());
            let connect = tokio::net::TcpStream::connect(&addrs[..]);
            match tokio::time::timeout(left, connect).await {
                Ok(Ok(_)) => Ok(start.elapsed().as_micros() as u64),
                Ok(Err(e)) => Err(CapError::Failed(format!("connect to {host}:{port}: {e}"))),
                Err(_) => Err(CapError::Failed(format!(
                    "connect to {host}:{port}: timed out after {timeout_ms} ms"
                ))),
            }
        }
        .await;
        to_guest(r)
    }

    async fn http_get(&mut self, url: String, timeout_ms: u32) -> GuestResult<HttpResponse> {
        let r = async {
            let outbound = self.outbound()?;
            let uri: ::http::Uri = url
                .parse()
                .map_err(|e| CapError::Invalid(format!("url {url:?}: {e}")))?;
            let request = ::http::Request::get(uri)
                .body(Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync())
                .map_err(|e| CapError::Invalid(format!("url {url:?}: {e}")))?;
            let start = Instant::now();
            let limit = timeout(timeout_ms);
            let response = outbound
                .send(&self.grants, request, Timeouts::all(limit))
                .await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut kept = Vec::new();
            // Read up to the contract's 64 KiB, then drop the rest with the connection: a big
            // body is never read whole into host memory.
            while kept.len() < HTTP_GET_BODY {
                let left = limit.saturating_sub(start.elapsed());
                let frame = match tokio::time::timeout(left, body.frame()).await {
                    Ok(Some(Ok(frame))) => frame,
                    Ok(Some(Err(e))) => return Err(CapError::Failed(format!("GET {url}: {e}"))),
                    Ok(None) => break,
                    Err(_) => {
                        return Err(CapError::Failed(format!(
                            "GET {url}: timed out after {timeout_ms} ms"
                        )));
                    }
                };
                if let Ok(data) = frame.into_data() {
                    let room = HTTP_GET_BODY - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Ok(HttpResponse {
                status,
                elapsed_us: start.elapsed().as_micros() as u64,
                body: kept,
            })
        }
        .await;
        to_guest(r)
    }
}
