//! `wasi:http/outgoing-handler` for probes granted `outbound`: wasmtime-wasi-http parses the
//! guest's request; this hook sends it through the host's one client ([`Outbound::send`]), so
//! it is checked against the resolved address like every other outbound connection.
//!
//! Denials reach the guest as `internal-error("denied: …")` naming the rule (the only error code
//! that carries text); everything else keeps its WASI error code (`connection-refused`,
//! `tls-certificate-error`, `connection-timeout`, `http-response-body-size`…). Nothing here
//! traps.

use super::client::{BodyError, Outbound, SendError, Timeouts};
use crate::policy::Grants;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as WasiError, RequestOptions, WasiBody, WasiHttpHooks};

/// Timeouts of a request whose options name none: the call's deadline bounds them anyway.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one store's `wasi:http` calls see.
pub struct HttpHooks {
    /// What the policy grants the probe.
    pub grants: Arc<Grants>,
    /// The host's client, or why it has none.
    pub outbound: Result<Arc<Outbound>, String>,
    /// When the call that owns the store must end.
    pub deadline: Instant,
    /// The execution, for logs.
    pub execution: String,
}

type IoFuture = Box<dyn Future<Output = Result<(), WasiError>> + Send>;
type Sent =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), WasiError>> + Send>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Sent {
        drop(fut);
        let (grants, outbound) = (self.grants.clone(), self.outbound.clone());
        let (deadline, execution) = (self.deadline, self.execution.clone());
        Box::new(async move {
            let pick = |d: Option<Duration>| d.unwrap_or(DEFAULT_TIMEOUT);
            let options = options.unwrap_or_default();
            let timeouts = Timeouts {
                connect: pick(options.connect_timeout),
                first_byte: pick(options.first_byte_timeout),
                between_bytes: pick(options.between_bytes_timeout),
            }
            .within(deadline.saturating_duration_since(Instant::now()));
            let request = request.map(|b| {
                b.map_err(|e| Box::new(std::io::Error::other(format!("{e:?}"))) as _)
                    .boxed_unsync()
            });
            let outbound = outbound.map_err(|e| {
                WasiError::InternalError(Some(format!("no outbound client on this host: {e}")))
            })?;
            let response = outbound
                .send(&grants, request, timeouts)
                .await
                .map_err(|e| {
                    if let SendError::Denied(why) = &e {
                        tracing::warn!(execution = %execution, "denied: {why}");
                    }
                    wasi_error(e)
                })?;
            let response = response.map(|b| b.map_err(body_error).boxed_unsync());
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// The WASI error code for a failed request.
fn wasi_error(e: SendError) -> WasiError {
    match e {
        SendError::Denied(_) | SendError::Invalid(_) | SendError::Failed(_) => {
            WasiError::InternalError(Some(e.to_string()))
        }
        SendError::Dns(text) => WasiError::DnsError {
            rcode: Some(text),
            info_code: None,
        },
        SendError::Refused(_) => WasiError::ConnectionRefused,
        SendError::Timeout(_) => WasiError::ConnectionTimeout,
        SendError::Tls(text) if text.contains("certificate") || text.contains("Certificate") => {
            WasiError::TlsCertificateError
        }
        SendError::Tls(_) => WasiError::TlsProtocolError,
        SendError::RequestBodyTooLarge(n) => WasiError::HttpRequestBodySize(Some(n)),
    }
}

fn body_error(e: BodyError) -> WasiError {
    match e {
        BodyError::TooLarge(cap) => WasiError::HttpResponseBodySize(Some(cap)),
        BodyError::Timeout(_) => WasiError::ConnectionReadTimeout,
        BodyError::Failed(text) => WasiError::InternalError(Some(text)),
    }
}
