//! Capability interfaces: linker glue, scope check and OS backend, one module each.
//!
//! A [`Context`] is what one store's host functions see: who is calling, what the policy grants
//! it, the journal its changes go to, and the OS backends. Every mutating call goes through
//! [`Context::change`]: the inverse is journalled (fsynced) before the system is touched.

pub mod cgroup;
pub mod command;
pub mod filesystem;
pub mod log;
pub mod network;
pub mod outbound;
pub mod process;
pub mod rollback;

use crate::contract;
use crate::journal::{EntryId, Journal};
use crate::policy::{Capability, Grants};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// Why a capability operation failed; maps one-to-one onto the contract's `error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The policy does not allow it; the reason names the rule.
    #[error("denied: {0}")]
    Denied(String),
    /// A parameter is malformed or out of range.
    #[error("invalid: {0}")]
    Invalid(String),
    /// This host cannot do it (kernel module, cgroup version, missing tool).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The target process, cgroup or namespace is gone.
    #[error("target gone: {0}")]
    TargetGone(String),
    /// Anything else.
    #[error("failed: {0}")]
    Failed(String),
}

/// Result of a capability operation.
pub type CapResult<T> = Result<T, CapError>;

impl From<CapError> for contract::types::Error {
    fn from(e: CapError) -> Self {
        use contract::types::Error as E;
        match e {
            CapError::Denied(r) => E::Denied(r),
            CapError::Invalid(r) => E::Invalid(r),
            CapError::Unsupported(r) => E::Unsupported(r),
            CapError::TargetGone(r) => E::TargetGone(r),
            CapError::Failed(r) => E::Failed(r),
        }
    }
}

/// What a host function returns to the guest: a trap only for host bugs, the contract's error
/// for everything the guest should handle.
pub type GuestResult<T> = wasmtime::Result<Result<T, contract::types::Error>>;

fn to_guest<T>(r: CapResult<T>) -> GuestResult<T> {
    Ok(r.map_err(Into::into))
}

/// How to undo one change: what the journal stores. Each capability owns its variant's type
/// and implements [`Change`] for it; this enum only names them, so journals stay readable
/// across versions (`{"kind": "continue", ...}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Inverse {
    /// A stopped process: continue it (if it is still the same process).
    Continue(process::Stopped),
    /// Stress workers: kill their process group.
    Stress(process::stress::StressInverse),
    /// Cgroup files: write back their exact previous contents.
    Cgroup(cgroup::linux::Inverse),
    /// Network rules and qdiscs: remove what was added, restore what was replaced.
    Network(network::linux::Inverse),
    /// A file a fill created: remove it, while its name still holds it.
    Fill(filesystem::linux::FillInverse),
    /// IO workers: kill their process group, remove their directory.
    IoStress(filesystem::IoStressInverse),
}

/// What every capability provides for the changes it makes, beside its host functions and its
/// typed scope: how to undo one (idempotent; a target that is gone counts as undone), whether
/// one made before a reboot is still there, and what a person runs when the host cannot undo it.
pub trait Change {
    /// Undoes the change.
    fn undo(&self, backends: &Backends) -> CapResult<()>;
    /// Whether the change is still present on the live system (after a reboot, say).
    fn is_present(&self, backends: &Backends) -> bool;
    /// The commands that undo it by hand.
    fn manual_steps(&self, backends: &Backends) -> String;
}

impl Change for Inverse {
    fn undo(&self, b: &Backends) -> CapResult<()> {
        match self {
            Inverse::Continue(c) => c.undo(b),
            Inverse::Stress(c) => c.undo(b),
            Inverse::Cgroup(c) => c.undo(b),
            Inverse::Network(c) => c.undo(b),
            Inverse::Fill(c) => Change::undo(c, b),
            Inverse::IoStress(c) => c.undo(b),
        }
    }

    fn is_present(&self, b: &Backends) -> bool {
        match self {
            Inverse::Continue(c) => c.is_present(b),
            Inverse::Stress(c) => c.is_present(b),
            Inverse::Cgroup(c) => c.is_present(b),
            Inverse::Network(c) => c.is_present(b),
            Inverse::Fill(c) => Change::is_present(c, b),
            Inverse::IoStress(c) => c.is_present(b),
        }
    }

    fn manual_steps(&self, b: &Backends) -> String {
        match self {
            Inverse::Continue(c) => c.manual_steps(b),
            Inverse::Stress(c) => c.manual_steps(b),
            Inverse::Cgroup(c) => c.manual_steps(b),
            Inverse::Network(c) => Change::manual_steps(c, b),
            Inverse::Fill(c) => Change::manual_steps(c, b),
            Inverse::IoStress(c) => c.manual_steps(b),
        }
    }
}

/// One capability interface of the contract: which plug-ins may import it, and its linker glue.
/// With the capability's own module (host functions, typed scope, backend, [`Change`]), this
/// table is all a new capability touches besides the WIT.
pub struct Registered<T: 'static> {
    /// The interface.
    pub capability: Capability,
    /// Whether faults may import it.
    pub faults: bool,
    /// Whether probes may import it.
    pub probes: bool,
    link: Link<T>,
}

/// How a store reaches its [`Context`].
pub type Getter<T> = fn(&mut T) -> &mut Context;
/// A capability's linker glue.
type Link<T> = fn(&mut Linker<T>, Getter<T>) -> wasmtime::Result<()>;

/// The capability registry.
pub fn registry<T: Send + 'static>() -> [Registered<T>; 8] {
    [
        Registered {
            capability: Capability::Log,
            faults: true,
            probes: true,
            link: |l, get| contract::log::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Rollback,
            faults: true,
            probes: false,
            link: |l, get| contract::rollback::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Process,
            faults: true,
            probes: true,
            link: |l, get| contract::process::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Cgroup,
            faults: true,
            probes: false,
            link: |l, get| contract::cgroup::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Network,
            faults: true,
            probes: false,
            link: |l, get| contract::network::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Outbound,
            faults: false,
            probes: true,
            link: |l, get| contract::outbound::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Filesystem,
            faults: true,
            probes: false,
            link: |l, get| contract::filesystem::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
        Registered {
            capability: Capability::Command,
            faults: false,
            probes: true,
            link: |l, get| contract::command::add_to_linker::<T, HasSelf<Context>>(l, get),
        },
    ]
}

/// A line a plug-in logged.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The execution it belongs to.
    pub execution: String,
    /// The plug-in.
    pub plugin: String,
    /// Severity.
    pub level: contract::log::Level,
    /// The text.
    pub message: String,
}

/// Where plug-in log lines go.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// The OS backends, shared by every store of an agent.
pub struct Backends {
    /// Processes never in scope: pid 1, the agent, its ancestors.
    pub protected_pids: Vec<u32>,
    /// The executable that runs stress workers (`faultline stress-worker`).
    pub worker_exe: PathBuf,
    /// Cgroups, or why this host has none usable.
    pub cgroup: CapResult<cgroup::linux::CgroupBackend>,
    /// Network namespaces, qdiscs and rules (and the delay workers).
    pub network: network::linux::NetworkBackend,
    /// The stops held on each process, so one fault's undo never continues a process another
    /// still holds stopped.
    pub stops: process::Holds,
    /// The one outbound HTTP client and the endpoints no probe reaches, or why there is none.
    pub outbound: Result<Arc<outbound::client::Outbound>, String>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("protected_pids", &self.protected_pids)
            .field("worker_exe", &self.worker_exe)
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// Backends for this process, with the default outbound limits.
    pub fn new(worker_exe: PathBuf) -> Backends {
        Backends::with_outbound(worker_exe, outbound::client::Limits::default(), &[])
    }

    /// Backends for this process whose outbound client enforces `limits` and trusts
    /// `extra_roots` besides webpki's roots.
    pub fn with_outbound(
        worker_exe: PathBuf,
        limits: outbound::client::Limits,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Backends {
        Backends {
            protected_pids: process::linux::protected_pids(),
            worker_exe,
            cgroup: cgroup::linux::CgroupBackend::new(),
            network: network::linux::NetworkBackend::new(),
            stops: process::Holds::default(),
            outbound: outbound::client::Outbound::new(limits, extra_roots)
                .map(Arc::new)
                .map_err(|e| format!("cannot set up TLS: {e}")),
        }
    }

    /// Undoes a change from its journalled JSON.
    pub fn undo_json(&self, inverse: &serde_json::Value) -> CapResult<()> {
        let inverse: Inverse = serde_json::from_value(inverse.clone())
            .map_err(|e| CapError::Failed(format!("unreadable journal inverse: {e}")))?;
        inverse.undo(self)
    }

    /// What to run by hand to undo a journalled change the host could not.
    pub fn manual_steps_json(&self, inverse: &serde_json::Value) -> String {
        match serde_json::from_value::<Inverse>(inverse.clone()) {
            Ok(i) => i.manual_steps(self),
            Err(_) => format!("apply the inverse recorded in the journal: {inverse}"),
        }
    }
}

/// What one store's host functions see.
pub struct Context {
    /// The execution the calls belong to.
    pub execution: String,
    /// What the policy grants this plug-in.
    pub grants: Arc<Grants>,
    /// Where changes are journalled.
    pub journal: Arc<Journal>,
    /// The OS backends.
    pub backends: Arc<Backends>,
    /// Where log lines go.
    pub log: LogSink,
    /// Changes this store made, oldest first.
    pub changes: Vec<EntryId>,
    /// This execution's gate: held (shared) by every host call in flight on the blocking pool,
    /// taken (exclusive) by whoever undoes its journal entries: a call whose guest was cut off
    /// still finishes its journalled change before the undo looks at the journal, so nothing is
    /// applied after its revert.
    pub gate: Arc<tokio::sync::RwLock<()>>,
    /// When the call this store serves is cut off, if it has a deadline: host functions that
    /// wait (a program's timeout) never wait past it.
    pub deadline: Option<std::time::Instant>,
}

impl Context {
    /// Runs a capability operation on the blocking pool: `/proc` waits, cgroup files, `ip`, `tc`
    /// and `nft` runs and the journal's fsync never hold an async worker. The operation sees a
    /// copy of this context; the changes it journals are added back here.
    pub(crate) async fn blocking<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Context) -> CapResult<T> + Send + 'static,
    ) -> GuestResult<T> {
        let pass = self.gate.clone().read_owned().await;
        let mut copy = Context {
            execution: self.execution.clone(),
            grants: self.grants.clone(),
            journal: self.journal.clone(),
            backends: self.backends.clone(),
            log: self.log.clone(),
            changes: Vec::new(),
            gate: self.gate.clone(),
            deadline: self.deadline,
        };
        let done = tokio::task::spawn_blocking(move || {
            let _pass = pass;
            let r = op(&mut copy);
            (copy.changes, r)
        })
        .await;
        match done {
            Ok((changes, r)) => {
                self.changes.extend(changes);
                to_guest(r)
            }
            // A panic in a backend is a host bug: trap the guest, the revert still runs.
            Err(e) => Err(wasmtime::Error::msg(format!("host operation failed: {e}"))),
        }
    }

    fn outside_scope(&self, what: &str) -> String {
        format!(
            "{what} is outside the scope granted to {} ({})",
            self.grants.component,
            self.grants.rules_text()
        )
    }

    /// A denial of a call, logged.
    fn denial(&self, reason: String) -> CapError {
        tracing::warn!(execution = %self.execution, "denied: {reason}");
        CapError::Denied(reason)
    }

    fn denied(&self, what: &str) -> CapError {
        self.denial(self.outside_scope(what))
    }

    /// Makes a change the journal can undo: inverse first (fsynced), then `apply`. When `apply`
    /// fails, whatever it did is undone at once.
    pub fn change(
        &mut self,
        summary: &str,
        inverse: Inverse,
        apply: impl FnOnce() -> CapResult<()>,
    ) -> CapResult<EntryId> {
        let json = serde_json::to_value(&inverse)
            .map_err(|e| CapError::Failed(format!("cannot encode inverse: {e}")))?;
        let id = self
            .journal
            .begin(&self.execution, &self.grants.component, summary, json)
            .map_err(|e| CapError::Failed(format!("journal: {e:#}")))?;
        match apply() {
            Ok(()) => {
                if let Err(e) = self.journal.applied(id) {
                    tracing::warn!("journal: {e:#}");
                }
                self.changes.push(id);
                tracing::info!(change = id, plugin = %self.grants.component, "{summary}");
                Ok(id)
            }
            Err(e) => {
                match inverse.undo(&self.backends) {
                    Ok(()) => {
                        let _ = self.journal.undone(id);
                    }
                    Err(u) => {
                        let _ = self.journal.undo_failed(id, &u.to_string());
                    }
                }
                Err(e)
            }
        }
    }
}

impl contract::types::Host for Context {}

/// Links the granted capability interfaces, and only those, into `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    granted: &[Capability],
    get: Getter<T>,
) -> wasmtime::Result<()> {
    contract::types::add_to_linker::<T, HasSelf<Context>>(linker, get)?;
    for entry in registry::<T>() {
        if granted.contains(&entry.capability) {
            (entry.link)(linker, get)?;
        }
    }
    Ok(())
}
