//! The agent's listener and connection loop.
//!
//! STUB (owner: transport helper): today plain TCP through `axum::serve`; to become TCP, TLS or
//! a Unix socket with a connection cap, header and body timeouts and the Host/Origin guard.

use super::config::{AgentConfig, Listen};
use std::future::Future;
use std::net::SocketAddr;

/// A bound listener.
pub struct Listener {
    tcp: tokio::net::TcpListener,
}

impl Listener {
    /// Binds what `config` says.
    pub async fn bind(config: &AgentConfig) -> anyhow::Result<Listener> {
        match &config.listen {
            Listen::Tcp(addr) => Ok(Listener {
                tcp: tokio::net::TcpListener::bind(addr).await?,
            }),
            Listen::Unix(p) => anyhow::bail!("unix sockets are not supported yet: {}", p.display()),
        }
    }

    /// The TCP address bound, if it is TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// What to print: `127.0.0.1:7787`, `https://…`, `unix:/run/faultline/agent.sock`.
    pub fn describe(&self) -> String {
        self.local_addr().map(|a| a.to_string()).unwrap_or_default()
    }
}

/// Serves `app` on `listener` until `shutdown` completes; connections in flight finish.
pub async fn serve(
    listener: Listener,
    _config: &AgentConfig,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener.tcp, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
