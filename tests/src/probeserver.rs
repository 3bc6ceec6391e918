//! A loopback HTTP/1.1 server (hyper) for the probe tests, plain or TLS with a self-signed
//! certificate (rcgen). Routes:
//!
//! | path | answer |
//! |---|---|
//! | `/status/<code>` | that status, body `status <code>` |
//! | `/json` | `{"status":"UP","count":3,"tags":["a","b"]}` |
//! | `/slow/<ms>` | 200 after `ms` milliseconds |
//! | `/big/<mib>` | 200 with `mib` MiB of `x`, streamed in 64 KiB chunks, never held whole |
//! | `/flaky` | 200 for every second request, else 500 |
//! | `/echo` | 200 with `<METHOD> <x-probe header> <body>` |

#![allow(clippy::expect_used, clippy::unwrap_used)] // Test support.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running server on 127.0.0.1 with an ephemeral port; stops when dropped.
pub struct ProbeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    /// Body bytes of `/big` sent so far.
    pub big_sent: Arc<AtomicU64>,
    /// The self-signed certificate (PEM) of an HTTPS server.
    pub cert_pem: Option<String>,
    task: JoinHandle<()>,
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` bytes of `x`, produced as they are polled.
struct Big {
    left: u64,
    sent: Arc<AtomicU64>,
}

impl Body for Big {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n as usize])))))
    }
}

type Answer = Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

fn full(status: u16, body: impl Into<Bytes>) -> Answer {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

async fn answer(
    request: Request<Incoming>,
    count: u64,
    big_sent: Arc<AtomicU64>,
) -> Result<Answer, std::convert::Infallible> {
    let path = request.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (route, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    Ok(match route {
        "status" => {
            let code: u16 = arg.parse().unwrap_or(400);
            full(code, format!("status {code}"))
        }
        "json" => full(200, r#"{"status":"UP","count":3,"tags":["a","b"]}"#),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(0))).await;
            full(200, "slow")
        }
        "big" => {
            let mib: u64 = arg.parse().unwrap_or(1);
            Response::new(
                Big {
                    left: mib << 20,
                    sent: big_sent,
                }
                .boxed(),
            )
        }
        "flaky" => {
            if count.is_multiple_of(2) {
                full(200, "ok")
            } else {
                full(500, "flaky")
            }
        }
        "echo" => {
            let method = request.method().to_string();
            let header = request
                .headers()
                .get("x-probe")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            full(
                200,
                format!("{method} {header} {}", String::from_utf8_lossy(&body)),
            )
        }
        _ => full(404, "no such route"),
    })
}

impl ProbeServer {
    /// A plain HTTP server.
    pub async fn start() -> ProbeServer {
        ProbeServer::serve(None).await
    }

    /// An HTTPS server whose certificate (for `localhost`) no public root signed.
    pub async fn start_tls() -> ProbeServer {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let mut server =
            ProbeServer::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await;
        server.cert_pem = Some(cert.cert.pem());
        server
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> ProbeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let big_sent = Arc::new(AtomicU64::new(0));
        let (count, sent) = (requests.clone(), big_sent.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (count, sent, tls) = (count.clone(), sent.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |r| {
                        let n = count.fetch_add(1, Ordering::Relaxed);
                        answer(r, n, sent.clone())
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), service).await;
                            }
                        }
                    }
                });
            }
        });
        ProbeServer {
            addr,
            requests,
            big_sent,
            cert_pem: None,
            task,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
