//! `cgroup-pids`: limits the number of tasks in a cgroup, so forks fail; revert restores the
//! exact previous limit.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `cgroup-pids`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The cgroup to limit.
    #[serde(flatten)]
    target: cgroup::TargetParams,
    /// Tasks (processes and threads) allowed, at least 1.
    max: u64,
}

struct CgroupPids;

impl Fault for CgroupPids {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Limits the number of tasks in a cgroup, so forks fail";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Cgroup];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.target()?;
        if params.max == 0 {
            return Err(Error::invalid("`max` must be at least 1"));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let target = params.target.target()?;
        let change = cgroup::set_pids_limit(&target, params.max)?;
        log::info(format!("limited {target:?} to {} tasks", params.max));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(CgroupPids);
