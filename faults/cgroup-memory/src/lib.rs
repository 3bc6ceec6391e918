//! `cgroup-memory`: limits a cgroup's memory; revert restores the exact previous limit.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// The smallest limit taken: below it a typo (bytes meant as MiB) would starve the cgroup.
const MIN_BYTES: u64 = 1 << 20;

/// Parameters of `cgroup-memory`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The cgroup to limit.
    #[serde(flatten)]
    target: cgroup::TargetParams,
    /// Memory allowed, in bytes (at least 1048576).
    bytes: u64,
}

struct CgroupMemory;

impl Fault for CgroupMemory {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str =
        "Limits a cgroup's memory: it reclaims, and its tasks may be OOM-killed";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Cgroup];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.target()?;
        if params.bytes < MIN_BYTES {
            return Err(Error::invalid(format!(
                "`bytes` must be at least {MIN_BYTES} (1 MiB), not {}",
                params.bytes
            )));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let target = params.target.target()?;
        let change = cgroup::set_memory_limit(&target, params.bytes)?;
        log::info(format!("limited {target:?} to {} bytes", params.bytes));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(CgroupMemory);
