//! `{{name}}`: caps a cgroup's CPU for the fault's duration; revert restores the old limit.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters: they become the fault's JSON Schema, which the host checks before `validate`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The cgroup: `pid` (the cgroup that process is in) or `path`.
    #[serde(flatten)]
    target: cgroup::TargetParams,
    /// CPU allowed, in thousandths of a core (500: half a core).
    millicores: u32,
}

struct {{Type}};

impl Fault for {{Type}} {
    type Params = Params;
    /// The host's change ids: `revert` hands them back.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "{{summary}}";
    const CAPABILITIES: &'static [Capability] = &[{{capabilities}}];

    /// Checks parameters beyond their types, with no side effects.
    fn validate(params: &Params) -> Result<(), Error> {
        params.target.target()?;
        if params.millicores == 0 {
            return Err(Error::invalid("`millicores` must be more than 0"));
        }
        Ok(())
    }

    /// Acts and returns at once: the host holds the fault for its duration, then reverts.
    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let target = params.target.target()?;
        let change = cgroup::set_cpu_limit(&target, params.millicores)?;
        log::info(format!("capped {target:?} at {} millicores", params.millicores));
        Ok(vec![change])
    }

    /// Runs in a fresh instance with only the state `inject` returned.
    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_sdk::testing::MockHost;

    #[test]
    fn sets_one_limit_and_revert_restores_it() {
        let host = MockHost::new();
        let params = serde_json::json!({ "path": "/system.slice/app.service", "millicores": 250 });
        let state = host.inject::<{{Type}}>(params).unwrap();
        assert_eq!(host.calls_to("cgroup/set-cpu-limit").len(), 1);
        host.revert::<{{Type}}>(state).unwrap();
        assert!(host.outstanding().is_empty());
    }

    #[test]
    fn a_relative_path_is_refused_before_anything_runs() {
        let host = MockHost::new();
        let params = serde_json::json!({ "path": "../etc", "millicores": 250 });
        let e = host.validate::<{{Type}}>(params).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(host.calls().is_empty());
    }
}
