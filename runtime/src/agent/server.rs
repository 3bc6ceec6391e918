//! The agent's listener and connection loop: hyper's HTTP/1.1 server over TCP, TLS (rustls) or
//! a Unix socket, with every limit a hostile or broken client could push against.
//!
//! | limit | what happens |
//! |---|---|
//! | `max_connections` connections at once | a connection beyond them is accepted, answered `503` (plain TCP and Unix) and closed at once: nothing waits in the kernel's backlog behind a flood, and a client retrying gets in as soon as a slot frees |
//! | `idle_timeout` to send a request head | counted from the connection's start or the end of its previous response: a client sending its headers a byte at a time, and an idle keep-alive connection, are closed after it (hyper's header-read timeout) |
//! | TLS handshake | within `idle_timeout`, in the connection's own task |
//! | request head | at most 64 KiB and 100 headers (`431` beyond) |
//! | request body | at most [`MAX_BODY`] (`413` JSON), pausing at most `body_timeout` between chunks |
//!
//! The [`guard`](super::guard) (Host, Origin, content type) runs in front of every request.
//! Shutdown stops accepting at once and gives requests in flight [`SHUTDOWN_GRACE`] to finish.

use super::config::{AgentConfig, Listen};
use super::guard::{Guard, MAX_BODY};
use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long requests in flight may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 100;

/// A bound listener.
pub struct Listener {
    inner: Inner,
}

enum Inner {
    Tcp {
        listener: tokio::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    },
    Unix {
        listener: tokio::net::UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    /// Binds what `config` says: a TCP address (with TLS when configured; its certificate and
    /// key are read here, in the blocking pool) or a Unix socket (mode 0660; a stale socket at
    /// the path is replaced, anything else there is refused).
    pub async fn bind(config: &AgentConfig) -> anyhow::Result<Listener> {
        config.check_plaintext().map_err(anyhow::Error::msg)?;
        match &config.listen {
            Listen::Tcp(addr) => {
                let tls = match &config.tls {
                    Some(tls) => {
                        let (cert, key) = (tls.cert.clone(), tls.key.clone());
                        let server = tokio::task::spawn_blocking(move || tls_config(&cert, &key))
                            .await
                            .context("loading TLS panicked")??;
                        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
                    }
                    None => None,
                };
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Ok(Listener {
                    inner: Inner::Tcp { listener, tls },
                })
            }
            Listen::Unix(path) => {
                let p = path.clone();
                let std_listener = tokio::task::spawn_blocking(move || bind_unix(&p))
                    .await
                    .context("binding the socket panicked")??;
                let listener = tokio::net::UnixListener::from_std(std_listener)
                    .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                Ok(Listener {
                    inner: Inner::Unix {
                        listener,
                        path: path.clone(),
                    },
                })
            }
        }
    }

    /// The TCP address bound, if it is TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp { listener, .. } => listener.local_addr().ok(),
            Inner::Unix { .. } => None,
        }
    }

    /// What to print: `127.0.0.1:7787`, `https://127.0.0.1:7787`, `unix:/run/faultline/agent.sock`.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Tcp { tls: None, .. } => {
                self.local_addr().map(|a| a.to_string()).unwrap_or_default()
            }
            Inner::Tcp { tls: Some(_), .. } => self
                .local_addr()
                .map(|a| format!("https://{a}"))
                .unwrap_or_default(),
            Inner::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// Reads a PEM certificate chain and private key into a rustls server configuration (HTTP/1.1
/// only). Sync: file reads.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path, what: &str| {
        crate::component::read_bounded(path, 1 << 20, what)
            .with_context(|| format!("cannot read the TLS {what} {}", path.display()))
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e:?}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "TLS certificate {} holds no PEM certificate",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {}: no usable PEM private key: {e:?}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "TLS certificate {} and key {} do not make a usable pair",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds a Unix socket at `path`, mode 0660: bound under a temporary name in the same
/// directory, its mode set, then renamed into place, so the socket is never reachable with a
/// looser mode. A stale socket at `path` is replaced; any other file there is refused. Sync.
fn bind_unix(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => anyhow::bail!(
            "unix:{} exists and is not a socket: refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot check unix:{}: {e}", path.display()),
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent.sock".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("cannot bind a socket in {}", dir.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot place the socket at unix:{}: {e}", path.display());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `app` on `listener` until `shutdown` completes; connections in flight get
/// [`SHUTDOWN_GRACE`] to finish. The guard, the body limit and the body timeout are applied to
/// every request here.
pub async fn serve(
    listener: Listener,
    config: &AgentConfig,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let guard = Arc::new(Guard::new(&config.allowed_hosts, listener.local_addr()));
    let app = app
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            config.body_timeout,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            super::guard::guard,
        ));
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let conn = Conn {
        http,
        service,
        graceful: GracefulShutdown::new(),
        handshake: config.idle_timeout,
        max_connections: config.max_connections,
    };
    tokio::pin!(shutdown);
    match &listener.inner {
        Inner::Tcp { listener, tls } => loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        match (Arc::clone(&slots).try_acquire_owned(), tls) {
                            (Ok(slot), None) => conn.spawn(stream, slot),
                            (Ok(slot), Some(tls)) => conn.spawn_tls(tls.clone(), stream, slot),
                            (Err(_), None) => conn.refuse(stream),
                            (Err(_), Some(_)) => drop(stream),
                        }
                    }
                    Err(e) => backoff(e).await,
                },
                _ = &mut shutdown => break,
            }
        },
        Inner::Unix { listener, .. } => loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => conn.spawn(stream, slot),
                        Err(_) => conn.refuse(stream),
                    },
                    Err(e) => backoff(e).await,
                },
                _ = &mut shutdown => break,
            }
        },
    }
    // Stop accepting first: a client now gets "connection refused", not a hang.
    let socket = match listener.inner {
        Inner::Unix { path, .. } => Some(path),
        Inner::Tcp { .. } => None,
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, conn.graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight {} s after shutdown began; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    if let Some(path) = socket {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }
    Ok(())
}

/// Out of file descriptors and the like: back off rather than spin.
async fn backoff(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

type Service = TowerToHyperService<axum::Router>;

/// What every connection task needs.
struct Conn {
    http: hyper::server::conn::http1::Builder,
    service: Service,
    graceful: GracefulShutdown,
    handshake: Duration,
    max_connections: usize,
}

impl Conn {
    /// Serves one connection in a task of its own; its slot frees when it closes.
    fn spawn<S>(&self, stream: S, slot: OwnedSemaphorePermit)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self
            .http
            .serve_connection(TokioIo::new(stream), self.service.clone());
        let watched = self.graceful.watcher().watch(connection);
        tokio::spawn(async move {
            // Errors are the client's (a reset, a timeout, a malformed request): hyper has
            // already answered or closed; nothing to do but free the slot.
            if let Err(e) = watched.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }

    /// The TLS handshake, within the idle timeout, then [`Conn::spawn`]'s serving, in one task.
    fn spawn_tls(
        &self,
        tls: tokio_rustls::TlsAcceptor,
        stream: tokio::net::TcpStream,
        slot: OwnedSemaphorePermit,
    ) {
        let (http, service, watcher, limit) = (
            self.http.clone(),
            self.service.clone(),
            self.graceful.watcher(),
            self.handshake,
        );
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(limit, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake not done within {limit:?}");
                    return;
                }
            };
            let connection = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }

    /// A connection beyond the cap: a 503 written if the socket takes it at once, then closed.
    fn refuse<S: RefuseWrite>(&self, stream: S) {
        let body = format!(
            "{{\"error\":\"the agent is serving {} connections, the most it allows at once; try again shortly\"}}\n",
            self.max_connections
        );
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.try_write_now(response.as_bytes());
    }
}

/// A non-blocking write of what fits in the socket buffer (never waits).
trait RefuseWrite {
    fn try_write_now(&self, bytes: &[u8]) -> std::io::Result<usize>;
}

impl RefuseWrite for tokio::net::TcpStream {
    fn try_write_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.try_write(bytes)
    }
}

impl RefuseWrite for tokio::net::UnixStream {
    fn try_write_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.try_write(bytes)
    }
}
