//! The `outbound` capability: TCP connects and HTTP GETs for probes, to granted hosts only.

use super::{CapError, CapResult, Context, GuestResult, to_guest};
use crate::contract::outbound::{Host, HttpResponse};
use std::time::{Duration, Instant};

impl Context {
    fn check_host(&self, host: &str, port: u16) -> CapResult<()> {
        let allowed = self.grants.outbound.iter().any(|h| h.allows(host, port));
        if allowed {
            Ok(())
        } else {
            Err(self.denied(&format!("{host}:{port}")))
        }
    }
}

fn timeout(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms.clamp(1, 60_000)))
}

impl Host for Context {
    async fn tcp_connect(&mut self, host: String, port: u16, timeout_ms: u32) -> GuestResult<u64> {
        if let Err(e) = self.check_host(&host, port) {
            return to_guest(Err(e));
        }
        let start = Instant::now();
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        let r = match tokio::time::timeout(timeout(timeout_ms), connect).await {
            Ok(Ok(_)) => Ok(start.elapsed().as_micros() as u64),
            Ok(Err(e)) => Err(CapError::Failed(format!("connect to {host}:{port}: {e}"))),
            Err(_) => Err(CapError::Failed(format!(
                "connect to {host}:{port}: timed out after {timeout_ms} ms"
            ))),
        };
        to_guest(r)
    }

    async fn http_get(&mut self, url: String, timeout_ms: u32) -> GuestResult<HttpResponse> {
        let parsed = match reqwest::Url::parse(&url) {
            Ok(u) => u,
            Err(e) => return to_guest(Err(CapError::Invalid(format!("url {url:?}: {e}")))),
        };
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port_or_known_default().unwrap_or(80);
        if let Err(e) = self.check_host(&host, port) {
            return to_guest(Err(e));
        }
        let start = Instant::now();
        let client = reqwest::Client::builder()
            .timeout(timeout(timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build();
        let r = async {
            let client = client.map_err(|e| CapError::Failed(e.to_string()))?;
            let resp = client
                .get(parsed)
                .send()
                .await
                .map_err(|e| CapError::Failed(format!("GET {url}: {e}")))?;
            let status = resp.status().as_u16();
            let mut body = resp
                .bytes()
                .await
                .map_err(|e| CapError::Failed(format!("GET {url}: {e}")))?
                .to_vec();
            body.truncate(64 * 1024);
            Ok(HttpResponse {
                status,
                elapsed_us: start.elapsed().as_micros() as u64,
                body,
            })
        }
        .await;
        to_guest(r)
    }
}
