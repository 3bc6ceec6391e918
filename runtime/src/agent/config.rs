//! `agent.toml`: where the agent listens, who may call it, what it may run.
//!
//! STUB (owner: transport helper): the types are the contract other modules build on; the
//! loading, validation and located errors are to be written.

use crate::hub::HubConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address (loopback by default).
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// TLS for the TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the API listens.
    pub listen: Listen,
    /// TLS, when configured.
    pub tls: Option<Tls>,
    /// The file of hashed tokens ([`crate::agent::auth::Tokens`]).
    pub tokens: PathBuf,
    /// The operator's policy; without one nothing is granted.
    pub policy: Option<PathBuf>,
    /// `Host` header values accepted besides the loopback names and the listen address.
    pub allowed_hosts: Vec<String>,
    /// Labels fleets select this agent by.
    pub labels: BTreeMap<String, String>,
    /// How often the hubs are synced.
    pub hub_sync_interval: Duration,
    /// Deadline of each call into a component.
    pub call_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The hubs (the `[hub]` table, as in `faultline.toml`).
    pub hub: HubConfig,
}
