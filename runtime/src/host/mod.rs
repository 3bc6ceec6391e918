//! The component host: one engine, a compile cache, checks before anything runs, and every call
//! in a fresh store with a memory cap and a deadline.
//!
//! A fault's life: [`Host::load_fault`] compiles (or fetches from the cache) and checks the
//! component, asks it to `describe` itself, matches the policy against where the component came
//! from ([`Identity`]: a verified hub release or a digest, never what it says of itself) and
//! links only the granted interfaces; [`FaultPlugin::inject`] runs `inject`;
//! a fault of world `ticking-fault` also gets [`FaultPlugin::tick`] while it is held;
//! [`FaultPlugin::revert`] runs the guest's `revert` in a fresh instance and then undoes whatever
//! the journal still holds for the execution — so a guest whose revert traps, hangs or lies
//! cannot leave the host changed. [`crate::execution`] drives that life for every caller.
//!
//! | file | role |
//! |---|---|
//! | `engine.rs` | the engine and its epoch ticker |
//! | `call.rs` | one call: store, deadline, verdict |
//! | `limits.rs` | one memory cap over a whole store, counts of instances and memories |
//! | `plugin.rs` | [`FaultPlugin`] and [`ProbePlugin`] |
//! | `verdict.rs` | a probe's [`Verdict`]: passed, failed, or not applicable |
//! | `check.rs` | exports and imports against the contract |
//! | `cache.rs` | compiled components on disk |
//! | `error.rs` | [`CallError`], [`LoadError`] |
//! | `recover.rs` | undoing what dead runs left |

pub mod cache;
mod call;
pub mod check;
mod engine;
mod error;
pub mod limits;
mod plugin;
pub mod recover;
mod verdict;

use crate::capability::{self, Backends, Context, LogLine, LogSink};
use crate::contract::{self, fault, probe, ticking};
use crate::journal::Journal;
use crate::policy::{Capability, Grants, Identity, Policy};
use anyhow::Result;
use call::StoreState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use check::{Kind, Refusal, Shape};
pub use contract::types::{Description, Error as GuestError, Outcome};
pub(crate) use error::anyhow_of_wasmtime;
pub use error::{CallError, GuestErrorText, LoadError};
pub use plugin::{
    FaultPlugin, Injected, MAX_STATE_BYTES, MIN_TICK, Plugin, PluginInfo, ProbePlugin, Reverted,
    TickInput, Ticked,
};
pub use verdict::{Checked, NotRun, Verdict};

/// Limits and places of a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Memory a store may hold in all, in bytes: every linear memory plus its tables.
    pub memory_limit: usize,
    /// Deadline for `describe`, `validate`, `inject` and `check`.
    pub call_timeout: Duration,
    /// Deadline for the guest's `revert`.
    pub revert_timeout: Duration,
    /// Compiled components; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Where the undo journal lives.
    pub state_dir: PathBuf,
    /// The executable that runs stress workers.
    pub worker_exe: PathBuf,
    /// Body sizes of probes' outbound HTTP (16 MiB of response, 1 MiB of request by default).
    pub outbound: capability::outbound::client::Limits,
    /// Certificate authorities probes' HTTPS trusts besides webpki's public roots (the
    /// configuration file's `[outbound] ca_files`); none by default.
    pub trusted_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl HostConfig {
    /// Defaults rooted at `state_dir`: 64 MiB of memory, 10 s per call, a cache beside the
    /// journal.
    pub fn new(state_dir: PathBuf) -> HostConfig {
        HostConfig {
            memory_limit: 64 << 20,
            call_timeout: Duration::from_secs(10),
            revert_timeout: Duration::from_secs(10),
            cache_dir: Some(state_dir.join("cache")),
            worker_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("faultline")),
            outbound: capability::outbound::client::Limits::default(),
            trusted_roots: Vec::new(),
            state_dir,
        }
    }
}

/// How long [`Host::spare_hub_sources`] waits for one hub source's name to resolve.
pub const HUB_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's own endpoints in this process: (address, whether probes are kept from it too).
/// Every [`Host`] made in the process applies them, so a host an experiment plan makes for
/// itself protects the agent's API and hubs as the agent's own host does.
static OWN_ENDPOINTS: Mutex<Vec<(std::net::SocketAddr, bool)>> = Mutex::new(Vec::new());

fn own_endpoints() -> Vec<(std::net::SocketAddr, bool)> {
    OWN_ENDPOINTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn remember_own_endpoint(addr: std::net::SocketAddr, from_probes: bool) {
    let mut own = OWN_ENDPOINTS.lock().unwrap_or_else(|p| p.into_inner());
    match own.iter_mut().find(|(a, _)| *a == addr) {
        Some(entry) => entry.1 |= from_probes,
        None => own.push((addr, from_probes)),
    }
}

/// Where one execution's plug-in log lines go, besides the host's own sink.
type Routes = Arc<Mutex<HashMap<String, LogSink>>>;

/// One execution's gate: held (shared) by each of its host calls in flight on the blocking
/// pool, taken (exclusive) while its journal entries are undone.
type Gate = Arc<tokio::sync::RwLock<()>>;

/// The gates of the executions that have a store or an undo under way. Per execution, so the
/// reverts of many executions (an emergency stop of a thousand held faults) run side by side
/// instead of each waiting for every other execution's calls.
#[derive(Default)]
struct Gates {
    /// By execution id: in id order, so two callers taking every gate never wait on each
    /// other crosswise.
    table: std::collections::BTreeMap<String, Gate>,
    /// The table's size at which gates nobody holds any more are dropped (doubles with the
    /// live ones, so pruning costs amortised O(1) per lookup).
    prune_at: usize,
}

impl Gates {
    fn of(&mut self, execution: &str) -> Gate {
        if self.table.len() >= self.prune_at {
            self.table.retain(|_, g| Arc::strong_count(g) > 1);
            self.prune_at = (self.table.len() * 2).max(64);
        }
        self.table.entry(execution.to_string()).or_default().clone()
    }

    /// Every gate, in the order of their executions' ids.
    fn all(&self) -> Vec<Gate> {
        self.table.values().cloned().collect()
    }
}

/// The component host: one engine, its cache, the journal and the OS backends.
pub struct Host {
    engine: Engine,
    config: HostConfig,
    cache: Option<cache::CompileCache>,
    journal: Arc<Journal>,
    backends: Arc<Backends>,
    log: LogSink,
    routes: Routes,
    gates: Mutex<Gates>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    ticker: engine::Ticker,
}

/// While alive, an execution runs on this host. When the last one ends, the heap its calls
/// freed goes back to the kernel ([`crate::memory::release_free_memory`], on the blocking
/// pool), so an agent returns to its idle footprint after a burst of runs or experiments.
pub struct Running {
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let last = self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1;
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(crate::memory::release_free_memory);
        }
    }
}

/// While alive, sends one execution's plug-in log lines to a sink of its own.
pub struct LogRoute {
    routes: Routes,
    execution: String,
}

impl Drop for LogRoute {
    fn drop(&mut self) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&self.execution);
        }
    }
}

impl Host {
    /// A host with its own journal file in `config.state_dir`. Log lines of plug-ins go to
    /// `log` (and to `tracing`).
    pub fn new(config: HostConfig, log: LogSink) -> Result<Host> {
        let engine = engine::engine()?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::CompileCache::new(dir, &engine)?),
            None => None,
        };
        let journal = Arc::new(Journal::create(&config.state_dir.join("journal"))?);
        let routes: Routes = Arc::default();
        let (global, table) = (log, routes.clone());
        let log: LogSink = Arc::new(move |line: LogLine| {
            let route = table
                .lock()
                .ok()
                .and_then(|t| t.get(&line.execution).cloned());
            if let Some(route) = route {
                route(line.clone());
            }
            global(line);
        });
        let host = Host {
            ticker: engine::Ticker::start(&engine)?,
            engine,
            backends: Arc::new(Backends::with_outbound(
                config.worker_exe.clone(),
                config.outbound,
                &config.trusted_roots,
            )),
            config,
            cache,
            journal,
            log,
            routes,
            gates: Mutex::default(),
            running: Arc::default(),
        };
        for (addr, from_probes) in own_endpoints() {
            if from_probes && let Ok(outbound) = &host.backends.outbound {
                outbound.protect(addr);
            }
            host.backends.network.protect(addr);
        }
        Ok(host)
    }

    /// Counts an execution as running until the returned guard is dropped.
    pub fn running(&self) -> Running {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Running {
            count: self.running.clone(),
        }
    }

    /// Sends `execution`'s plug-in log lines to `sink` too, until the returned route is dropped.
    pub fn route_logs(&self, execution: &str, sink: LogSink) -> LogRoute {
        if let Ok(mut r) = self.routes.lock() {
            r.insert(execution.to_string(), sink);
        }
        LogRoute {
            routes: self.routes.clone(),
            execution: execution.to_string(),
        }
    }

    /// The journal this host writes.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The OS backends.
    pub fn backends(&self) -> &Arc<Backends> {
        &self.backends
    }

    /// Makes `addr` unreachable for every probe, whatever the policy grants, and keeps its
    /// traffic out of every network fault in the agent's own namespace
    /// ([`Host::spare_endpoint`]): the agent calls it with each address its API listens on.
    /// Every host made later in this process protects it too.
    pub fn protect_endpoint(&self, addr: std::net::SocketAddr) {
        if let Ok(outbound) = &self.backends.outbound {
            outbound.protect(addr);
        }
        self.backends.network.protect(addr);
        remember_own_endpoint(addr, true);
    }

    /// Keeps TCP traffic to and from `addr` out of every network fault applied from now on in
    /// the agent's own network namespace (loss, blackhole, reject, DNS failure, bandwidth,
    /// delay...), whatever the fault asks for; probes may still reach it. For the agent's own
    /// connections: its hubs ([`Host::spare_hub_sources`]) and its API.
    /// Every host made later in this process spares it too.
    pub fn spare_endpoint(&self, addr: std::net::SocketAddr) {
        self.backends.network.protect(addr);
        remember_own_endpoint(addr, false);
    }

    /// Resolves the `http(s)` sources of `hub` once (each within [`HUB_RESOLVE_TIMEOUT`]) and
    /// spares every address found ([`Host::spare_endpoint`]), so that a network fault cannot cut
    /// the agent off from its hubs. Names are resolved on tokio's blocking pool. Returns the
    /// addresses spared and, for each source that could not be resolved, why; an offline hub
    /// has nothing to spare. An address a name moves to later is not followed.
    pub async fn spare_hub_sources(
        &self,
        hub: &crate::hub::HubConfig,
    ) -> (Vec<std::net::SocketAddr>, Vec<String>) {
        let (mut spared, mut problems) = (Vec::new(), Vec::new());
        if hub.offline {
            return (spared, problems);
        }
        let sources = match hub.sources() {
            Ok(s) => s,
            Err(e) => return (spared, vec![format!("hub sources: {e}")]),
        };
        for configured in sources {
            let crate::hub::Source::Http(url) = &configured.source else {
                continue;
            };
            let (Some(name), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                problems.push(format!("hub source {url} names no host and port"));
                continue;
            };
            let name = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let lookup = tokio::net::lookup_host((name.clone(), port));
            match tokio::time::timeout(HUB_RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => {
                    for addr in addrs {
                        self.spare_endpoint(addr);
                        spared.push(addr);
                    }
                }
                Ok(Err(e)) => problems.push(format!(
                    "hub source {url}: cannot resolve {name}: {e}; its traffic is not spared"
                )),
                Err(_) => problems.push(format!(
                    "hub source {url}: resolving {name} took over {HUB_RESOLVE_TIMEOUT:?}; \
                     its traffic is not spared"
                )),
            }
        }
        (spared, problems)
    }

    /// The wasm engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Compiles (or fetches from the cache) a component, on the blocking pool. Returns it, its
    /// `sha256:` digest and whether the cache served it.
    pub async fn compile(&self, bytes: &[u8]) -> Result<(Component, String, bool), LoadError> {
        let (engine, cache, bytes) = (self.engine.clone(), self.cache.clone(), bytes.to_vec());
        let compiled = tokio::task::spawn_blocking(move || {
            let hex = hex::encode(Sha256::digest(&bytes));
            let loaded = match &cache {
                Some(cache) => cache.load(&engine, &bytes, &hex),
                None => Component::from_binary(&engine, &bytes)
                    .map(|c| (c, false))
                    .map_err(anyhow_of_wasmtime),
            };
            (loaded, hex)
        })
        .await
        .map_err(|e| LoadError::Host(anyhow::anyhow!("compiling panicked: {e}")))?;
        let (loaded, hex) = compiled;
        let (component, hit) =
            loaded.map_err(|e| LoadError::Refused(Refusal::Invalid(format!("{e:#}"))))?;
        Ok((component, format!("sha256:{hex}"), hit))
    }

    /// Checks a component without running it: its kind and shape, or why it is refused.
    pub fn check(&self, component: &Component) -> Result<(Kind, Shape), Refusal> {
        let kind = check::check_exports(&self.engine, component)?;
        let shape = check::shape(&self.engine, component);
        check::check_imports(kind, &shape)?;
        Ok((kind, shape))
    }

    /// Compiles and checks a component and asks it to describe itself (with nothing granted:
    /// any call it makes is denied, so describing has no side effects).
    pub async fn inspect(&self, bytes: &[u8]) -> Result<Inspection, LoadError> {
        Ok(self.inspect_linked(bytes).await?.0)
    }

    /// [`Host::inspect`], also handing back the linked component it described: what
    /// [`Host::load`] runs, so a load links once.
    async fn inspect_linked(&self, bytes: &[u8]) -> Result<(Inspection, Which), LoadError> {
        let (component, digest, cached) = self.compile(bytes).await?;
        let (kind, shape) = self.check(&component)?;
        let nothing = Arc::new(Grants::capabilities_only(&digest, &[]));
        let which = self.pre(kind, &component, &shape)?;
        let description = describe(self, &which, nothing).await?;
        check_declared(&shape, &description)?;
        let inspection = Inspection {
            component,
            digest,
            cached,
            kind,
            shape,
            description,
        };
        Ok((inspection, which))
    }

    /// Loads a component for running: [`Host::inspect`], then matches the policy against
    /// `identity` — where the bytes came from — and links only what it grants. Importing an
    /// interface the policy does not grant is a refusal; so is a hub release whose component
    /// describes itself as something other than its hub entry.
    pub async fn load(
        &self,
        bytes: &[u8],
        identity: &Identity,
        policy: &Policy,
    ) -> Result<Plugin, LoadError> {
        self.load_as(bytes, identity, policy, None).await
    }

    async fn load_as(
        &self,
        bytes: &[u8],
        identity: &Identity,
        policy: &Policy,
        wanted: Option<Kind>,
    ) -> Result<Plugin, LoadError> {
        let (
            Inspection {
                digest,
                kind,
                shape,
                description,
                ..
            },
            which,
        ) = self.inspect_linked(bytes).await?;
        if let Some(wanted) = wanted
            && wanted != kind
        {
            return Err(Refusal::WrongWorld {
                component: format!("{}@{}", description.name, description.version),
                is: kind,
                wanted,
            }
            .into());
        }
        let grants = Self::admit(&digest, &description, &shape, identity, policy)?;
        let info = PluginInfo {
            kind,
            digest,
            identity: identity.clone(),
            description,
            shape,
            grants,
        };
        Ok(match which {
            Which::Fault(pre, ticking) => Plugin::Fault(FaultPlugin { info, pre, ticking }),
            Which::Probe(pre) => Plugin::Probe(ProbePlugin { info, pre }),
        })
    }

    /// Whether `policy` lets the inspected component run as `identity`, and with what: the
    /// bytes must be the ones `identity` was resolved to, a hub release must describe itself
    /// as its hub entry, and the policy must grant every capability interface it imports.
    /// [`Host::load`] applies it; `faultline inspect --policy` reports it.
    pub fn admit(
        digest: &str,
        description: &crate::contract::types::Description,
        shape: &Shape,
        identity: &Identity,
        policy: &Policy,
    ) -> Result<Arc<Grants>, LoadError> {
        if identity.digest != digest {
            return Err(LoadError::Host(anyhow::anyhow!(
                "the component's digest {digest} is not the {} it was resolved to",
                identity.digest
            )));
        }
        if let Some(origin) = &identity.origin
            && (origin.name != description.name
                || semver::Version::parse(&description.version).ok().as_ref()
                    != Some(&origin.version))
        {
            return Err(Refusal::IdentityMismatch {
                hub: origin.hub.clone(),
                listed: format!("{}@{}", origin.name, origin.version),
                described: format!("{}@{}", description.name, description.version),
            }
            .into());
        }
        let grants = Arc::new(policy.grants_for(identity));
        for c in &shape.capabilities {
            if !grants.allows(*c) {
                let interface = check::import_of(shape, *c).map_or_else(
                    || format!("{}/{}@{}", contract::PACKAGE, c, contract::VERSION),
                    str::to_string,
                );
                return Err(Refusal::NotGranted {
                    interface,
                    component: identity.label(),
                    rules: grants.rules_text(),
                }
                .into());
            }
        }
        Ok(grants)
    }

    /// [`Host::load`] for a fault; a probe is refused before the policy is consulted.
    pub async fn load_fault(
        &self,
        bytes: &[u8],
        identity: &Identity,
        policy: &Policy,
    ) -> Result<FaultPlugin, LoadError> {
        let plugin = self.load_as(bytes, identity, policy, Some(Kind::Fault));
        match plugin.await? {
            Plugin::Fault(f) => Ok(f),
            Plugin::Probe(_) => Err(kind_checked()),
        }
    }

    /// [`Host::load`] for a probe; a fault is refused before the policy is consulted.
    pub async fn load_probe(
        &self,
        bytes: &[u8],
        identity: &Identity,
        policy: &Policy,
    ) -> Result<ProbePlugin, LoadError> {
        let plugin = self.load_as(bytes, identity, policy, Some(Kind::Probe));
        match plugin.await? {
            Plugin::Probe(p) => Ok(p),
            Plugin::Fault(_) => Err(kind_checked()),
        }
    }

    fn pre(&self, kind: Kind, component: &Component, shape: &Shape) -> Result<Which, LoadError> {
        let mut linker: Linker<StoreState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(error::anyhow_of)?;
        let capabilities = &shape.capabilities;
        capability::add_to_linker(&mut linker, capabilities, |s: &mut StoreState| &mut s.cap)
            .map_err(error::anyhow_of)?;
        // `wasi:http` only for what may use `outbound` (the import check already refused it
        // for faults); `wasi:sockets` is linked for all but answers only a granted probe.
        if kind == Kind::Probe && capabilities.contains(&Capability::Outbound) {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(error::anyhow_of)?;
        }
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?;
        Ok(match kind {
            Kind::Fault => {
                // A ticking fault is also a plain fault: `describe`, `validate`, `inject` and
                // `revert` go through the `fault` bindings, only `tick` through `ticking`.
                let ticking = if shape.ticks {
                    let pre = ticking::TickingFaultPre::new(instance_pre.clone()).map_err(|e| {
                        Refusal::ExportTypes(format!(
                            "'tick' is not the contract's tick(tick-request) -> \
                             result<tick-response, error>: {e:#}"
                        ))
                    })?;
                    Some(pre)
                } else {
                    None
                };
                let pre = fault::FaultPre::new(instance_pre)
                    .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?;
                Which::Fault(pre, ticking)
            }
            Kind::Probe => Which::Probe(
                probe::ProbePre::new(instance_pre)
                    .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?,
            ),
        })
    }

    fn store(
        &self,
        grants: Arc<Grants>,
        execution: &str,
        limit: Duration,
    ) -> (Store<StoreState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(call::STDERR_CAP);
        let outbound = self.backends.outbound.clone();
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_udp(false)
            .allow_tcp(false)
            .allow_ip_name_lookup(false);
        if let (true, Ok(outbound)) = (grants.allows(Capability::Outbound), &outbound) {
            // Every connect is checked against its address, so a lookup only tells the guest
            // where it may then be refused.
            wasi.allow_tcp(true)
                .allow_ip_name_lookup(true)
                .socket_addr_check(capability::outbound::socket_check(
                    grants.clone(),
                    outbound.clone(),
                    execution.to_string(),
                ));
        }
        let state = StoreState {
            wasi: wasi.build(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http: capability::outbound::http::HttpHooks {
                grants: grants.clone(),
                outbound,
                deadline: Instant::now() + limit,
                execution: execution.to_string(),
            },
            table: ResourceTable::new(),
            limits: limits::Limiter::new(self.config.memory_limit),
            cap: Context {
                execution: execution.to_string(),
                grants,
                journal: self.journal.clone(),
                backends: self.backends.clone(),
                log: self.log.clone(),
                changes: Vec::new(),
                gate: self.gate(execution),
                deadline: None,
            },
            _awake: self.ticker.awake(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        (store, stderr)
    }

    /// Undoes every change the journal still holds for `execution`, newest first, on the
    /// blocking pool; `None` undoes every execution's. Waits first for host calls still in
    /// flight (a guest cut off mid-call), so none lands after the undo. Returns the failures,
    /// each with what to run by hand; they stay in the journal for a later retry.
    pub async fn undo_journal(&self, execution: &str) -> Vec<String> {
        self.undo_outstanding(Some(execution.to_string())).await
    }

    /// [`Host::undo_journal`] for every execution this host journalled.
    pub async fn undo_everything(&self) -> Vec<String> {
        self.undo_outstanding(None).await
    }

    /// The gate table (a std mutex held only for a lookup, never across an await).
    fn gates(&self) -> std::sync::MutexGuard<'_, Gates> {
        self.gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `execution`'s gate.
    fn gate(&self, execution: &str) -> Gate {
        self.gates().of(execution)
    }

    async fn undo_outstanding(&self, execution: Option<String>) -> Vec<String> {
        // Only this execution's calls in flight are waited for; undoing everything waits for
        // every execution's.
        let gates = match &execution {
            Some(id) => vec![self.gate(id)],
            None => self.gates().all(),
        };
        let mut _exclusive = Vec::with_capacity(gates.len());
        for gate in gates {
            _exclusive.push(gate.write_owned().await);
        }
        let (journal, backends) = (self.journal.clone(), self.backends.clone());
        let undone = tokio::task::spawn_blocking(move || {
            undo_entries(&journal, &backends, execution.as_deref())
        })
        .await;
        undone.unwrap_or_else(|e| vec![format!("undoing the journal panicked: {e}")])
    }
}
/// Refuses imports beyond what the component declares: a fault that says it only logs does
/// not get to signal processes, whatever a policy would grant it.
fn check_declared(
    shape: &Shape,
    description: &crate::contract::types::Description,
) -> Result<(), Refusal> {
    // Imports must be within what the component declares, not only what the policy grants:
    // a fault that says it only logs does not get to signal processes.
    for c in &shape.capabilities {
        // `describe()` returns the 0.1 `capability` enum, which cannot name interfaces
        // added later (`filesystem`, `command`): those are declared by being imported, and
        // the policy must still grant them.
        let declared = matches!(c, Capability::Log | Capability::Rollback)
            || !c.declarable()
            || description
                .capabilities
                .iter()
                .any(|d| wit_capability(*d) == *c);
        if !declared {
            let interface = check::import_of(shape, *c).map_or_else(
                || format!("{}/{}@{}", contract::PACKAGE, c, contract::VERSION),
                str::to_string,
            );
            return Err(Refusal::Undeclared(interface));
        }
    }
    Ok(())
}

/// `load_as` refused the other kind already (naming it); reaching this is a host bug.
fn kind_checked() -> LoadError {
    LoadError::Host(anyhow::anyhow!(
        "the host loaded a plug-in of another kind than it checked"
    ))
}

fn undo_entries(journal: &Journal, backends: &Backends, execution: Option<&str>) -> Vec<String> {
    let mut failures = Vec::new();
    for entry in journal.outstanding(execution) {
        match backends.undo_json(&entry.inverse) {
            Ok(()) => {
                tracing::info!(change = entry.id, "undid: {}", entry.summary);
                if let Err(e) = journal.undone(entry.id) {
                    failures.push(format!("change {}: journal: {e:#}", entry.id));
                }
            }
            Err(e) => {
                let _ = journal.undo_failed(entry.id, &e.to_string());
                failures.push(format!(
                    "change {} ({}) could not be undone: {e}; undo by hand: {}",
                    entry.id,
                    entry.summary,
                    backends.manual_steps_json(&entry.inverse)
                ));
            }
        }
    }
    if journal.is_poisoned() {
        failures.push(
            "the journal's lock is poisoned: its state cannot be trusted; run `faultline recover`"
                .into(),
        );
    }
    failures
}

/// The contract a component was built against, from the version of the contract interfaces it
/// imports (`faultline:contract/types@0.1.0` → `faultline:contract@0.1.0`); this host's when it
/// imports none.
fn built_against(imports: &[String]) -> String {
    let prefix = format!("{}/", contract::PACKAGE);
    let version = imports
        .iter()
        .filter_map(|i| i.strip_prefix(&prefix)?.split_once('@').map(|(_, v)| v))
        .max_by(|a, b| {
            let v = |s: &str| semver::Version::parse(s).ok();
            v(a).cmp(&v(b))
        })
        .unwrap_or(contract::VERSION);
    format!("{}@{version}", contract::PACKAGE)
}

fn wit_capability(c: contract::types::Capability) -> Capability {
    use contract::types::Capability as W;
    match c {
        W::Log => Capability::Log,
        W::Rollback => Capability::Rollback,
        W::Process => Capability::Process,
        W::Cgroup => Capability::Cgroup,
        W::Network => Capability::Network,
        W::Outbound => Capability::Outbound,
    }
}

enum Which {
    Fault(
        fault::FaultPre<StoreState>,
        Option<ticking::TickingFaultPre<StoreState>>,
    ),
    Probe(probe::ProbePre<StoreState>),
}

/// A compiled, checked component and what it says of itself.
pub struct Inspection {
    /// The compiled component.
    pub component: Component,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Whether the compile cache served it.
    pub cached: bool,
    /// Fault or probe.
    pub kind: Kind,
    /// Its exports and imports.
    pub shape: Shape,
    /// What `describe` returned.
    pub description: Description,
}

async fn describe(
    host: &Host,
    which: &Which,
    grants: Arc<Grants>,
) -> Result<Description, CallError> {
    let limit = host.config.call_timeout;
    let (description, _) =
        plugin::call(
            host,
            grants,
            "describe",
            "describe",
            limit,
            async |s| match which {
                Which::Fault(p, _) => p.instantiate_async(&mut *s).await?.call_describe(s).await,
                Which::Probe(p) => p.instantiate_async(&mut *s).await?.call_describe(s).await,
            },
        )
        .await?;
    Ok(description)
}

/// Lists a component's imports for the hub (by parsing it) and describes it (with a host of its
/// own that grants nothing).
#[derive(Debug, Clone, Copy)]
pub struct ImportLister;

impl ImportLister {
    /// A lister.
    pub fn new() -> ImportLister {
        ImportLister
    }
}

impl Default for ImportLister {
    fn default() -> Self {
        ImportLister::new()
    }
}

impl crate::hub::ComponentImports for ImportLister {
    fn imported_interfaces(&self, wasm: &[u8]) -> anyhow::Result<Vec<String>> {
        // Parsed, not compiled: the host compiles (once, cached) when it loads the component.
        check::import_names(wasm)
    }

    /// A real [`Host`] (journal in a temporary directory, no compile cache) runs
    /// [`Host::inspect`], which calls `describe` with nothing granted. `inspect` is async and
    /// this method is not: it runs on a thread of its own with a current-thread runtime of its
    /// own, so it never enters (nor blocks a worker of) the caller's runtime.
    fn describe(&self, wasm: &[u8]) -> anyhow::Result<crate::hub::build::Described> {
        use anyhow::Context as _;
        let run = || -> anyhow::Result<crate::hub::build::Described> {
            let state = tempfile::tempdir()
                .context("creating a state directory to describe the component in")?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime to describe the component")?;
            let mut config = HostConfig::new(state.path().to_path_buf());
            config.cache_dir = None;
            let host = Host::new(config, tracing_log())?;
            let inspection = runtime
                .block_on(host.inspect(wasm))
                .context("loading the component")?;
            let d = inspection.description;
            let schema: serde_json::Value = serde_json::from_str(&d.params_schema)
                .context("describe()'s params-schema is not JSON")?;
            let serde_json::Value::Object(params_schema) = schema else {
                anyhow::bail!("describe()'s params-schema is not a JSON object: {schema}");
            };
            Ok(crate::hub::build::Described {
                name: d.name,
                version: d.version,
                summary: d.summary,
                kind: match inspection.kind {
                    Kind::Fault => crate::hub::Kind::Fault,
                    Kind::Probe => crate::hub::Kind::Probe,
                },
                params_schema,
                // Interfaces newer than the 0.1 `capability` enum are declared by importing
                // them; the index lists them beside what describe() names.
                capabilities: d
                    .capabilities
                    .into_iter()
                    .map(wit_capability)
                    .chain(
                        inspection
                            .shape
                            .capabilities
                            .iter()
                            .copied()
                            .filter(|c| !c.declarable()),
                    )
                    .collect(),
                revertible: d.revertible,
                contract: built_against(&inspection.shape.imports),
            })
        };
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("faultline-describe".into())
                .spawn_scoped(scope, run)
                .context("starting a thread to describe the component")?;
            worker
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("describing the component panicked")))
        })
    }
}

/// A log sink that only forwards to `tracing`.
pub fn tracing_log() -> LogSink {
    Arc::new(|line: LogLine| {
        use contract::log::Level;
        let (p, m) = (&line.plugin, &line.message);
        match line.level {
            Level::Trace => tracing::trace!(plugin = %p, "{m}"),
            Level::Debug => tracing::debug!(plugin = %p, "{m}"),
            Level::Info => tracing::info!(plugin = %p, "{m}"),
            Level::Warn => tracing::warn!(plugin = %p, "{m}"),
            Level::Error => tracing::error!(plugin = %p, "{m}"),
        }
    })
}

/// Measures a duration, for reports.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn one_gate_per_execution_kept_while_held_and_dropped_once_free() {
        let mut gates = Gates::default();
        let a = gates.of("ex-a");
        assert!(Arc::ptr_eq(&a, &gates.of("ex-a")), "one gate per execution");
        assert!(!Arc::ptr_eq(&a, &gates.of("ex-b")));
        // A thousand executions come and go; only the held gate survives the pruning.
        for i in 0..1000 {
            drop(gates.of(&format!("ex-{i}")));
        }
        assert!(gates.table.len() <= 130, "{} gates kept", gates.table.len());
        assert!(
            Arc::ptr_eq(&a, &gates.of("ex-a")),
            "a held gate is never dropped"
        );
        let names: Vec<String> = gates
            .all()
            .iter()
            .map(|g| {
                gates
                    .table
                    .iter()
                    .find(|(_, h)| Arc::ptr_eq(g, h))
                    .map(|(k, _)| k.clone())
                    .unwrap()
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            names, sorted,
            "all() hands gates out in the order of their ids"
        );
    }

    #[tokio::test]
    async fn executions_are_counted_until_their_guards_drop() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(HostConfig::new(dir.path().to_path_buf()), tracing_log()).unwrap();
        let count = || host.running.load(std::sync::atomic::Ordering::Acquire);
        let (a, b) = (host.running(), host.running());
        assert_eq!(count(), 2);
        drop(a);
        assert_eq!(count(), 1);
        // The last one hands freed memory back on the blocking pool; the count is 0 at once.
        drop(b);
        assert_eq!(count(), 0);
    }

    #[tokio::test]
    async fn an_undo_of_one_execution_waits_only_for_that_executions_calls() {
        let gates = Mutex::new(Gates::default());
        let of = |x: &str| gates.lock().unwrap().of(x);
        // A call of ex-a is in flight (its pass held).
        let pass = of("ex-a").read_owned().await;
        // ex-b's undo goes ahead at once.
        let b = of("ex-b");
        let got = tokio::time::timeout(Duration::from_secs(5), b.write()).await;
        assert!(got.is_ok(), "ex-b waited for ex-a's call");
        drop(got);
        // ex-a's undo waits until the call is done.
        let a = of("ex-a");
        assert!(
            a.try_write().is_err(),
            "ex-a's undo ran beside its own call"
        );
        drop(pass);
        assert!(a.try_write().is_ok());
    }
}
