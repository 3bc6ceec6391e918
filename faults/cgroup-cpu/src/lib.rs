//! `cgroup-cpu`: limits a cgroup to a number of millicores; revert restores the exact previous
//! quota and period.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `cgroup-cpu`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The cgroup to limit.
    #[serde(flatten)]
    target: cgroup::TargetParams,
    /// CPU allowed, in thousandths of a core (500: half a core), 1 to 1000000.
    millicores: u32,
}

struct CgroupCpu;

impl Fault for CgroupCpu {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Limits a cgroup's CPU to a number of millicores";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Cgroup];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.target()?;
        if !(1..=1_000_000).contains(&params.millicores) {
            return Err(Error::invalid(format!(
                "`millicores` must be 1 to 1000000, not {}",
                params.millicores
            )));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let target = params.target.target()?;
        let change = cgroup::set_cpu_limit(&target, params.millicores)?;
        log::info(format!(
            "limited {target:?} to {} millicores",
            params.millicores
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(CgroupCpu);
