//! `cgroup-freeze`: freezes every task in a cgroup; revert thaws them.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `cgroup-freeze`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The cgroup to freeze.
    #[serde(flatten)]
    target: cgroup::TargetParams,
}

struct CgroupFreeze;

impl Fault for CgroupFreeze {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Freezes every task in a cgroup; revert thaws them";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Cgroup];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.target().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let target = params.target.target()?;
        let change = cgroup::freeze(&target)?;
        log::info(format!("froze {target:?}"));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(CgroupFreeze);
