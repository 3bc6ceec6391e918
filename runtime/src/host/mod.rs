//! The component host: one engine, a compile cache, checks before anything runs, and every call
//! in a fresh store with a memory cap and a deadline.
//!
//! A fault's life: [`Host::load`] compiles (or fetches from the cache) and checks the component,
//! asks it to `describe` itself, matches the policy and links only the granted interfaces;
//! [`Plugin::inject`] runs `inject`; [`Plugin::revert`] runs the guest's `revert` in a fresh
//! instance and then undoes whatever the journal still holds for the execution — so a guest
//! whose revert traps, hangs or lies cannot leave the host changed.

pub mod cache;
pub mod check;
pub mod limits;
pub mod recover;

use crate::capability::{self, Backends, Context, LogLine, LogSink};
use crate::contract::{self, fault, probe};
use crate::journal::Journal;
use crate::policy::{Capability, Grants, Identity, Policy};
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use check::{Kind, Refusal, Shape};
pub use contract::types::{Description, Error as GuestError, Outcome};

/// How often the epoch advances; deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of a guest's stderr kept for the trap message.
const STDERR_CAP: usize = 16 * 1024;

/// Limits and places of a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Bytes a store may hold in total over all its linear memories and tables.
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
            state_dir,
        }
    }
}

/// Why a call into a plug-in failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plug-in returned the contract's error.
    #[error("{phase} returned an error: {error}")]
    Guest {
        /// Which export.
        phase: &'static str,
        /// What it said.
        error: GuestErrorText,
    },
    /// The plug-in trapped (a panic, an illegal operation).
    #[error("{phase} trapped: {message}")]
    Trap {
        /// Which export.
        phase: &'static str,
        /// The trap and what the guest wrote to stderr.
        message: String,
    },
    /// The plug-in ran past its deadline and was cut off.
    #[error("{phase} ran past its deadline of {limit:?} and was cut off")]
    Deadline {
        /// Which export.
        phase: &'static str,
        /// The deadline.
        limit: Duration,
    },
    /// The plug-in tried to grow its memory past the cap.
    #[error("{phase} exceeded the memory limit of {limit} bytes (asked for {asked})")]
    MemoryLimit {
        /// Which export.
        phase: &'static str,
        /// The cap.
        limit: usize,
        /// What it asked for.
        asked: usize,
    },
    /// The host failed (a bug or an exhausted resource).
    #[error("{phase}: host error: {message}")]
    Host {
        /// Which export.
        phase: &'static str,
        /// What failed.
        message: String,
    },
}

/// The contract's error as text, for messages and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestErrorText {
    /// `denied`, `invalid`, `unsupported`, `target-gone` or `failed`.
    pub kind: &'static str,
    /// The reason.
    pub reason: String,
}

impl std::fmt::Display for GuestErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

impl From<GuestError> for GuestErrorText {
    fn from(e: GuestError) -> Self {
        let (kind, reason) = match e {
            GuestError::Denied(r) => ("denied", r),
            GuestError::Invalid(r) => ("invalid", r),
            GuestError::Unsupported(r) => ("unsupported", r),
            GuestError::TargetGone(r) => ("target-gone", r),
            GuestError::Failed(r) => ("failed", r),
        };
        GuestErrorText { kind, reason }
    }
}

/// Why loading a component failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component breaks the contract or the policy.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Its `describe` failed.
    #[error(transparent)]
    Describe(#[from] CallError),
    /// The host could not load it.
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

/// Everything one store holds.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: limits::Limiter,
    cap: Context,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    _ticker: Ticker,
}

impl Host {
    /// A host with its own journal file in `config.state_dir`. Log lines of plug-ins go to
    /// `log` (and to `tracing`).
    pub fn new(config: HostConfig, log: LogSink) -> Result<Host> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .wasm_component_model(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&wasm)
            .map_err(anyhow_of_wasmtime)
            .context("failed to create the wasm engine")?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::CompileCache::new(dir, &engine)?),
            None => None,
        };
        let journal = Arc::new(Journal::create(&config.state_dir.join("journal"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, ticker_stop) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("faultline-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("failed to start the epoch ticker")?;
        Ok(Host {
            engine,
            backends: Arc::new(Backends::new(config.worker_exe.clone())),
            config,
            cache,
            journal,
            log,
            _ticker: Ticker { stop },
        })
    }

    /// The journal this host writes.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The OS backends.
    pub fn backends(&self) -> &Arc<Backends> {
        &self.backends
    }

    /// The wasm engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Compiles (or fetches from the cache) a component. Returns it, its `sha256:` digest and
    /// whether the cache served it.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, String, bool), LoadError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let loaded = match &self.cache {
            Some(cache) => cache.load(&self.engine, bytes, &hex),
            None => Component::new(&self.engine, bytes)
                .map(|c| (c, false))
                .map_err(anyhow_of_wasmtime),
        };
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
        let (component, digest, cached) = self.compile(bytes)?;
        let (kind, shape) = self.check(&component)?;
        let nothing = Arc::new(Grants::capabilities_only(&digest, &[]));
        let pre = self.pre(kind, &component, &shape.capabilities, nothing)?;
        let description = describe(self, &pre).await?;
        Ok(Inspection {
            component,
            digest,
            cached,
            kind,
            shape,
            description,
        })
    }

    /// Loads a component for running: [`Host::inspect`], then matches the policy and links
    /// only what it grants. Importing an interface the policy does not grant is a refusal.
    pub async fn load(&self, bytes: &[u8], policy: &Policy) -> Result<Plugin, LoadError> {
        let Inspection {
            component,
            digest,
            kind,
            shape,
            description,
            ..
        } = self.inspect(bytes).await?;
        let identity = Identity::local(&digest);
        // Imports must be within what the component declares, not only what the policy grants:
        // a fault that says it only logs does not get to signal processes.
        for c in &shape.capabilities {
            let declared = matches!(c, Capability::Log | Capability::Rollback)
                || description
                    .capabilities
                    .iter()
                    .any(|d| wit_capability(*d) == *c);
            if !declared {
                return Err(Refusal::Undeclared(format!(
                    "{}/{}@{}",
                    contract::PACKAGE,
                    c,
                    contract::VERSION
                ))
                .into());
            }
        }
        let grants = Arc::new(policy.grants_for(&identity));
        for c in &shape.capabilities {
            if !grants.allows(*c) {
                return Err(Refusal::NotGranted {
                    interface: format!("{}/{}@{}", contract::PACKAGE, c, contract::VERSION),
                    component: identity.label(),
                    rules: grants.rules_text(),
                }
                .into());
            }
        }
        let pre = self.pre(kind, &component, &shape.capabilities, grants.clone())?;
        Ok(Plugin {
            kind,
            digest,
            description,
            shape,
            grants,
            pre,
        })
    }

    fn pre(
        &self,
        kind: Kind,
        component: &Component,
        capabilities: &[Capability],
        grants: Arc<Grants>,
    ) -> Result<Pre, LoadError> {
        let mut linker: Linker<StoreState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow_of)?;
        capability::add_to_linker(&mut linker, capabilities, |s: &mut StoreState| &mut s.cap)
            .map_err(anyhow_of)?;
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?;
        let which = match kind {
            Kind::Fault => Which::Fault(
                fault::FaultPre::new(instance_pre)
                    .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?,
            ),
            Kind::Probe => Which::Probe(
                probe::ProbePre::new(instance_pre)
                    .map_err(|e| Refusal::ExportTypes(format!("{e:#}")))?,
            ),
        };
        Ok(Pre { which, grants })
    }

    fn store(&self, pre: &Pre, execution: &str) -> (Store<StoreState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(STDERR_CAP);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = StoreState {
            wasi,
            table: ResourceTable::new(),
            limits: limits::Limiter::new(self.config.memory_limit),
            cap: Context {
                execution: execution.to_string(),
                grants: pre.grants.clone(),
                journal: self.journal.clone(),
                backends: self.backends.clone(),
                log: self.log.clone(),
                changes: Vec::new(),
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        (store, stderr)
    }

    /// Undoes every change the journal still holds for `execution`, newest first. Returns the
    /// failures, each with what to run by hand; they stay in the journal for a later retry.
    pub fn undo_journal(&self, execution: &str) -> Vec<String> {
        let mut failures = Vec::new();
        for entry in self.journal.outstanding(Some(execution)) {
            match self.backends.undo_json(&entry.inverse) {
                Ok(()) => {
                    tracing::info!(change = entry.id, "undid: {}", entry.summary);
                    if let Err(e) = self.journal.undone(entry.id) {
                        failures.push(format!("change {}: journal: {e:#}", entry.id));
                    }
                }
                Err(e) => {
                    let _ = self.journal.undo_failed(entry.id, &e.to_string());
                    failures.push(format!(
                        "change {} ({}) could not be undone: {e}; undo by hand: {}",
                        entry.id,
                        entry.summary,
                        manual_steps(&entry.inverse)
                    ));
                }
            }
        }
        failures
    }
}

/// What to run by hand to undo a change the host could not.
pub fn manual_steps(inverse: &serde_json::Value) -> String {
    use capability::Inverse;
    match serde_json::from_value::<Inverse>(inverse.clone()) {
        Ok(Inverse::Continue { pid, .. }) => format!("kill -CONT {pid}"),
        Ok(Inverse::Stress(i)) => format!("kill -KILL -- -{}", i.pgid),
        Ok(Inverse::Cgroup(_)) | Ok(Inverse::Network(_)) | Err(_) => {
            format!("apply the inverse recorded in the journal: {inverse}")
        }
    }
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

fn anyhow_of(e: wasmtime::Error) -> LoadError {
    LoadError::Host(anyhow_of_wasmtime(e))
}

/// Wasmtime's error as an `anyhow` error, keeping the whole chain in the message.
pub(crate) fn anyhow_of_wasmtime(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

enum Which {
    Fault(fault::FaultPre<StoreState>),
    Probe(probe::ProbePre<StoreState>),
}

struct Pre {
    which: Which,
    grants: Arc<Grants>,
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

/// A loaded, checked, pre-instantiated plug-in. Each call runs in a fresh instance.
pub struct Plugin {
    /// Fault or probe.
    pub kind: Kind,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// What it said of itself.
    pub description: Description,
    /// Its exports and imports.
    pub shape: Shape,
    /// What the policy grants it.
    pub grants: Arc<Grants>,
    pre: Pre,
}

/// What `inject` left behind: the guest's state and the changes the host journalled.
#[derive(Debug, Clone)]
pub struct Injected {
    /// Opaque state for `revert`.
    pub state: Vec<u8>,
    /// Journal entries the injection made.
    pub changes: Vec<u64>,
}

/// How a revert went.
#[derive(Debug, Clone, Default)]
pub struct Reverted {
    /// What went wrong in the guest's own revert, if anything (the journal still undid all).
    pub guest_error: Option<String>,
    /// Changes the host could not undo, with manual steps. Empty means the host is clean.
    pub failures: Vec<String>,
}

fn classify(phase: &'static str, e: wasmtime::Error, stderr: &MemoryOutputPipe) -> CallError {
    if let Some(hit) = e.downcast_ref::<limits::MemoryLimitHit>() {
        return CallError::MemoryLimit {
            phase,
            limit: hit.limit,
            asked: hit.asked,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return CallError::Deadline {
            phase,
            limit: Duration::ZERO,
        };
    }
    let mut message = format!("{e:#}");
    let said = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_string();
    if !said.is_empty() {
        message = format!("{said} ({message})");
    }
    CallError::Trap { phase, message }
}

async fn within<T>(
    phase: &'static str,
    limit: Duration,
    stderr: &MemoryOutputPipe,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> Result<T, CallError> {
    // Epochs cut off guest code; the outer timeout also covers time inside host functions.
    match tokio::time::timeout(limit + TICK * 10, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match classify(phase, e, stderr) {
            CallError::Deadline { phase, .. } => CallError::Deadline { phase, limit },
            other => other,
        }),
        Err(_) => Err(CallError::Deadline { phase, limit }),
    }
}

/// Arms a call's deadline. The guest yields to the executor every tick, so a looping guest
/// never holds a worker thread and a signal, a stop or an emergency stop is acted on while it
/// runs (dropping the call cancels it); once `limit` has passed it traps.
fn arm_deadline(store: &mut Store<StoreState>, limit: Duration) {
    let end = Instant::now() + limit;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= end {
            wasmtime::UpdateDeadline::Interrupt
        } else {
            wasmtime::UpdateDeadline::Yield(1)
        })
    });
}

async fn describe(host: &Host, pre: &Pre) -> Result<Description, CallError> {
    let (mut store, stderr) = host.store(pre, "describe");
    let limit = host.config.call_timeout;
    arm_deadline(&mut store, limit);
    within("describe", limit, &stderr, async {
        match &pre.which {
            Which::Fault(p) => {
                let i = p.instantiate_async(&mut store).await?;
                i.call_describe(&mut store).await
            }
            Which::Probe(p) => {
                let i = p.instantiate_async(&mut store).await?;
                i.call_describe(&mut store).await
            }
        }
    })
    .await
}

fn guest<T>(phase: &'static str, r: Result<T, GuestError>) -> Result<T, CallError> {
    r.map_err(|e| CallError::Guest {
        phase,
        error: e.into(),
    })
}

impl Plugin {
    /// `name@version` as it described itself.
    pub fn label(&self) -> String {
        format!("{}@{}", self.description.name, self.description.version)
    }

    /// Checks parameters against the schema the plug-in published, naming each problem.
    pub fn check_params(&self, params: &str) -> Result<(), CallError> {
        let invalid = |reason: String| CallError::Guest {
            phase: "validate",
            error: GuestErrorText {
                kind: "invalid",
                reason,
            },
        };
        let instance: serde_json::Value = serde_json::from_str(params)
            .map_err(|e| invalid(format!("parameters are not JSON: {e}")))?;
        if !instance.is_object() {
            return Err(invalid("parameters must be a JSON object".into()));
        }
        let schema: serde_json::Value = match serde_json::from_str(&self.description.params_schema)
        {
            Ok(s) => s,
            Err(e) => {
                return Err(invalid(format!(
                    "{} publishes an unreadable parameter schema: {e}",
                    self.label()
                )));
            }
        };
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            invalid(format!(
                "{} publishes an invalid parameter schema: {e}",
                self.label()
            ))
        })?;
        let problems: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!("parameters: {}", problems.join("; "))))
        }
    }

    /// Checks parameters against the published schema, then runs the plug-in's `validate` (no
    /// side effects: nothing is granted to it).
    pub async fn validate(&self, host: &Host, params: &str) -> Result<(), CallError> {
        self.check_params(params)?;
        let nothing = Pre {
            which: match &self.pre.which {
                Which::Fault(p) => Which::Fault(p.clone()),
                Which::Probe(p) => Which::Probe(p.clone()),
            },
            grants: Arc::new(Grants::capabilities_only(&self.grants.component, &[])),
        };
        let (mut store, stderr) = host.store(&nothing, "validate");
        let limit = host.config.call_timeout;
        arm_deadline(&mut store, limit);
        let r = within("validate", limit, &stderr, async {
            match &nothing.which {
                Which::Fault(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.call_validate(&mut store, params).await
                }
                Which::Probe(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.call_validate(&mut store, params).await
                }
            }
        })
        .await?;
        guest("validate", r)
    }

    /// Runs `inject` for `execution`. On any failure the caller must still call
    /// [`Plugin::revert`]: the journal may hold changes made before the failure.
    pub async fn inject(
        &self,
        host: &Host,
        execution: &str,
        params: &str,
        duration: Duration,
    ) -> Result<Injected, CallError> {
        let Which::Fault(pre) = &self.pre.which else {
            return Err(CallError::Host {
                phase: "inject",
                message: "a probe cannot be injected".into(),
            });
        };
        let (mut store, stderr) = host.store(&self.pre, execution);
        let limit = host.config.call_timeout;
        arm_deadline(&mut store, limit);
        let request = contract::types::InjectRequest {
            params: params.to_string(),
            duration_ms: duration.as_millis() as u64,
            execution_id: execution.to_string(),
        };
        let r = within("inject", limit, &stderr, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_inject(&mut store, &request).await
        })
        .await?;
        let state = guest("inject", r)?;
        Ok(Injected {
            state,
            changes: store.data().cap.changes.clone(),
        })
    }

    /// Reverts `execution`: the guest's `revert(state)` in a fresh instance with its own
    /// deadline (when `inject` returned state), then the journal undoes whatever is left.
    pub async fn revert(&self, host: &Host, execution: &str, state: Option<&[u8]>) -> Reverted {
        let mut reverted = Reverted::default();
        if let (Some(state), Which::Fault(pre)) = (state, &self.pre.which) {
            let (mut store, stderr) = host.store(&self.pre, execution);
            let limit = host.config.revert_timeout;
            arm_deadline(&mut store, limit);
            let r = within("revert", limit, &stderr, async {
                let i = pre.instantiate_async(&mut store).await?;
                i.call_revert(&mut store, state).await
            })
            .await
            .and_then(|r| guest("revert", r));
            if let Err(e) = r {
                tracing::warn!("{}: {e}; the journal undoes the rest", self.label());
                reverted.guest_error = Some(e.to_string());
            }
        }
        reverted.failures = host.undo_journal(execution);
        reverted
    }

    /// Runs a probe's `check` once.
    pub async fn check(
        &self,
        host: &Host,
        execution: &str,
        params: &str,
    ) -> Result<Outcome, CallError> {
        let Which::Probe(pre) = &self.pre.which else {
            return Err(CallError::Host {
                phase: "check",
                message: "a fault has no check".into(),
            });
        };
        let (mut store, stderr) = host.store(&self.pre, execution);
        let limit = host.config.call_timeout;
        arm_deadline(&mut store, limit);
        let request = contract::types::ProbeRequest {
            params: params.to_string(),
            execution_id: execution.to_string(),
        };
        let r = within("check", limit, &stderr, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_check(&mut store, &request).await
        })
        .await?;
        guest("check", r)
    }
}

/// Lists a component's imports for the hub, with the host's own compiler and checks.
pub struct ImportLister {
    engine: Engine,
}

impl ImportLister {
    /// A lister with a plain engine (no cache: the hub verifies, it does not run).
    pub fn new() -> ImportLister {
        ImportLister {
            engine: Engine::default(),
        }
    }
}

impl Default for ImportLister {
    fn default() -> Self {
        ImportLister::new()
    }
}

impl crate::hub::ComponentImports for ImportLister {
    fn imported_interfaces(&self, wasm: &[u8]) -> anyhow::Result<Vec<String>> {
        let component = Component::new(&self.engine, wasm).map_err(anyhow_of_wasmtime)?;
        Ok(check::shape(&self.engine, &component).imports)
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
