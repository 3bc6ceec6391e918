//! Loaded plug-ins: a fault and a probe are two types, so a probe cannot be injected and a fault
//! cannot be checked, by construction. Each call runs in a fresh instance.

use super::call::{StoreState, arm_deadline, guest, within};
use super::check::{Kind, Shape};
use super::error::{CallError, GuestErrorText};
use super::{Checked, Description, Host, Outcome};
use crate::contract::types::Error as GuestError;
use crate::contract::{self, fault, probe, ticking};
use crate::policy::{Grants, Identity};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

/// What every plug-in is: where it came from, what it said of itself, what it may do.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Fault or probe.
    pub kind: Kind,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Where it came from: a verified hub release, or a local file known by its digest. Grants
    /// were matched against this, never against `description`.
    pub identity: Identity,
    /// What it said of itself.
    pub description: Description,
    /// Its exports and imports.
    pub shape: Shape,
    /// What the policy grants it.
    pub grants: Arc<Grants>,
}

impl PluginInfo {
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
        let schema: serde_json::Value = serde_json::from_str(&self.description.params_schema)
            .map_err(|e| {
                invalid(format!(
                    "{} publishes an unreadable parameter schema: {e}",
                    self.label()
                ))
            })?;
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

    /// Grants nothing: for `validate`, which must have no side effects.
    fn nothing(&self) -> Arc<Grants> {
        Arc::new(Grants::capabilities_only(&self.grants.component, &[]))
    }
}

/// A loaded fault: `inject` and `revert`, and `tick` when it is a ticking fault.
pub struct FaultPlugin {
    /// What it is.
    pub info: PluginInfo,
    pub(super) pre: fault::FaultPre<StoreState>,
    /// The same component bound as a `ticking-fault`, when it exports `tick`.
    pub(super) ticking: Option<ticking::TickingFaultPre<StoreState>>,
}

/// Most bytes of state `inject` or `tick` may return: the host keeps it in memory and hands it
/// to every later call, so a fault cannot grow it without bound.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// The shortest interval between two ticks; a fault asking for less gets this.
pub const MIN_TICK: Duration = Duration::from_millis(10);

/// A loaded probe: `check`.
pub struct ProbePlugin {
    /// What it is.
    pub info: PluginInfo,
    pub(super) pre: probe::ProbePre<StoreState>,
}

/// A loaded plug-in of either kind.
pub enum Plugin {
    /// A fault.
    Fault(FaultPlugin),
    /// A probe.
    Probe(ProbePlugin),
}

impl Plugin {
    /// What it is.
    pub fn info(&self) -> &PluginInfo {
        match self {
            Plugin::Fault(f) => &f.info,
            Plugin::Probe(p) => &p.info,
        }
    }
}

impl std::ops::Deref for FaultPlugin {
    type Target = PluginInfo;
    fn deref(&self) -> &PluginInfo {
        &self.info
    }
}

impl std::ops::Deref for ProbePlugin {
    type Target = PluginInfo;
    fn deref(&self) -> &PluginInfo {
        &self.info
    }
}

/// What `inject` left behind: the guest's state and the changes the host journalled.
#[derive(Debug, Clone)]
pub struct Injected {
    /// Opaque state for `revert`.
    pub state: Vec<u8>,
    /// Journal entries the injection made.
    pub changes: Vec<u64>,
}

/// What one `tick` returned.
#[derive(Debug, Clone)]
pub struct Ticked {
    /// The new state, for the next tick and for `revert`.
    pub state: Vec<u8>,
    /// When to tick next, counted from the start of this tick (at least [`MIN_TICK`]); `None`
    /// when the fault wants no more ticks.
    pub next: Option<Duration>,
    /// Journal entries the tick made.
    pub changes: Vec<u64>,
}

/// What the host tells `tick`.
#[derive(Debug, Clone)]
pub struct TickInput<'a> {
    /// The state the previous call returned.
    pub state: &'a [u8],
    /// 0 for the first tick, right after `inject` returned.
    pub tick: u64,
    /// Time since `inject` returned.
    pub elapsed: Duration,
    /// Time until the host reverts; `None` when the run is open-ended.
    pub remaining: Option<Duration>,
}

/// Refuses state above [`MAX_STATE_BYTES`].
fn bounded_state(phase: &'static str, state: Vec<u8>) -> Result<Vec<u8>, CallError> {
    if state.len() > MAX_STATE_BYTES {
        return Err(CallError::StateTooLarge {
            phase,
            size: state.len(),
            limit: MAX_STATE_BYTES,
        });
    }
    Ok(state)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a revert went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reverted {
    /// What went wrong in the guest's own revert, if anything (the journal still undid all).
    pub guest_error: Option<String>,
    /// Changes the host could not undo, with manual steps. Empty means the host is clean.
    pub failures: Vec<String>,
}

impl Reverted {
    /// Whether the host is back as it was.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one export in a fresh store for `execution` with `grants`, under `limit`: the store, its
/// deadline and the verdict are the same for every export. Returns what the export returned and
/// the changes the host journalled during the call.
pub(super) async fn call<T>(
    host: &Host,
    grants: Arc<Grants>,
    execution: &str,
    phase: &'static str,
    limit: Duration,
    export: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<T>,
) -> Result<(T, Vec<u64>), CallError> {
    let (mut store, stderr) = host.store(grants, execution, limit);
    arm_deadline(&mut store, limit);
    store.data_mut().cap.deadline = Some(std::time::Instant::now() + limit);
    let r = within(phase, limit, &stderr, export(&mut store)).await?;
    Ok((r, store.data().cap.changes.clone()))
}

/// Checks parameters against the published schema, then runs `export` (the plug-in's own
/// `validate`) with nothing granted: validating has no side effects.
async fn validate(
    info: &PluginInfo,
    host: &Host,
    params: &str,
    export: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<Result<(), GuestError>>,
) -> Result<(), CallError> {
    info.check_params(params)?;
    let limit = host.config().call_timeout;
    let (r, _) = call(host, info.nothing(), "validate", "validate", limit, export).await?;
    guest("validate", r)
}

impl FaultPlugin {
    /// Checks parameters against the published schema, then runs the fault's `validate` with
    /// nothing granted (no side effects).
    pub async fn validate(&self, host: &Host, params: &str) -> Result<(), CallError> {
        validate(&self.info, host, params, async |s| {
            let i = self.pre.instantiate_async(&mut *s).await?;
            i.call_validate(s, params).await
        })
        .await
    }

    /// Runs `inject` for `execution`. On any failure the caller must still call
    /// [`FaultPlugin::revert`]: the journal may hold changes made before the failure.
    /// (`crate::execution` does all of that; prefer it.)
    pub async fn inject(
        &self,
        host: &Host,
        execution: &str,
        params: &str,
        duration: Duration,
    ) -> Result<Injected, CallError> {
        let request = contract::types::InjectRequest {
            params: params.to_string(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            execution_id: execution.to_string(),
        };
        let limit = host.config().call_timeout;
        let grants = self.grants.clone();
        let (r, changes) = call(host, grants, execution, "inject", limit, async |s| {
            let i = self.pre.instantiate_async(&mut *s).await?;
            i.call_inject(s, &request).await
        })
        .await?;
        let state = bounded_state("inject", guest("inject", r)?)?;
        Ok(Injected { state, changes })
    }

    /// Whether this fault exports `tick`: the host calls it while the fault is held.
    pub fn ticks(&self) -> bool {
        self.ticking.is_some()
    }

    /// Runs `tick` once for `execution`, in a fresh instance with the call deadline. On any
    /// failure the caller must still revert (with the state the last successful call returned):
    /// the journal may hold changes this tick made. (`crate::execution` runs the schedule.)
    pub async fn tick(
        &self,
        host: &Host,
        execution: &str,
        input: TickInput<'_>,
    ) -> Result<Ticked, CallError> {
        let Some(pre) = &self.ticking else {
            return Err(CallError::Host {
                phase: "tick",
                message: format!("{} does not export tick", self.label()),
            });
        };
        let request = contract::types::TickRequest {
            state: input.state.to_vec(),
            tick: input.tick,
            elapsed_ms: millis(input.elapsed),
            remaining_ms: input.remaining.map_or(0, millis),
            execution_id: execution.to_string(),
        };
        let limit = host.config().call_timeout;
        let grants = self.grants.clone();
        let (r, changes) = call(host, grants, execution, "tick", limit, async |s| {
            let i = pre.instantiate_async(&mut *s).await?;
            i.call_tick(s, &request).await
        })
        .await?;
        let response = guest("tick", r)?;
        let state = bounded_state("tick", response.state)?;
        let next = (response.next_ms > 0)
            .then(|| Duration::from_millis(u64::from(response.next_ms)).max(MIN_TICK));
        Ok(Ticked {
            state,
            next,
            changes,
        })
    }

    /// Reverts `execution`: the guest's `revert(state)` in a fresh instance with its own
    /// deadline (when `inject` returned state), then the journal undoes whatever is left.
    pub async fn revert(&self, host: &Host, execution: &str, state: Option<&[u8]>) -> Reverted {
        let mut reverted = Reverted::default();
        if let Some(state) = state {
            let limit = host.config().revert_timeout;
            let grants = self.grants.clone();
            let r = call(host, grants, execution, "revert", limit, async |s| {
                let i = self.pre.instantiate_async(&mut *s).await?;
                i.call_revert(s, state).await
            })
            .await
            .and_then(|(r, _)| guest("revert", r));
            if let Err(e) = r {
                tracing::warn!("{}: {e}; the journal undoes the rest", self.label());
                reverted.guest_error = Some(e.to_string());
            }
        }
        reverted.failures = host.undo_journal(execution).await;
        reverted
    }
}

impl ProbePlugin {
    /// Checks parameters against the published schema, then runs the probe's `validate` with
    /// nothing granted (no side effects).
    pub async fn validate(&self, host: &Host, params: &str) -> Result<(), CallError> {
        validate(&self.info, host, params, async |s| {
            let i = self.pre.instantiate_async(&mut *s).await?;
            i.call_validate(s, params).await
        })
        .await
    }

    /// Runs the probe's `check` once.
    pub async fn check(
        &self,
        host: &Host,
        execution: &str,
        params: &str,
    ) -> Result<Outcome, CallError> {
        let request = contract::types::ProbeRequest {
            params: params.to_string(),
            execution_id: execution.to_string(),
        };
        let limit = host.config().call_timeout;
        let grants = self.grants.clone();
        let (r, _) = call(host, grants, execution, "check", limit, async |s| {
            let i = self.pre.instantiate_async(&mut *s).await?;
            i.call_check(s, &request).await
        })
        .await?;
        guest("check", r)
    }

    /// Runs the probe's `check` once and judges it: passed, failed, or not applicable when it
    /// could not run (what experiments score).
    pub async fn judge(&self, host: &Host, execution: &str, params: &str) -> Checked {
        let start = std::time::Instant::now();
        let r = self.check(host, execution, params).await;
        Checked::new(&r, super::elapsed_ms(start))
    }
}
