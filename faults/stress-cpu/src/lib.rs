//! `stress-cpu`: burns CPU with the agent's own load workers, optionally inside a cgroup;
//! revert kills them.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, process, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `stress-cpu`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// Worker processes, one per core to load (1 to 64).
    #[serde(default = "one")]
    workers: u32,
    /// Percent of one core each worker burns (1 to 100).
    #[serde(default = "full")]
    load_percent: u8,
    /// Cgroup to place the workers in (e.g. the service's, so they compete with it); none for
    /// the agent's own.
    #[serde(default)]
    cgroup: Option<String>,
}

fn one() -> u32 {
    1
}

fn full() -> u8 {
    100
}

struct StressCpu;

impl Fault for StressCpu {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Burns CPU with load workers, optionally inside a cgroup";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Process];

    fn validate(params: &Params) -> Result<(), Error> {
        process::check_workers(params.workers)?;
        if !(1..=100).contains(&params.load_percent) {
            return Err(Error::invalid(format!(
                "`load_percent` must be 1 to 100, not {}",
                params.load_percent
            )));
        }
        params.cgroup.as_deref().map_or(Ok(()), cgroup::check_path)
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let change = process::start_stress(&process::StressSpec {
            kind: process::StressKind::Cpu,
            workers: params.workers,
            load_percent: params.load_percent,
            memory_bytes: 0,
            cgroup: params.cgroup.clone(),
        })?;
        log::info(format!(
            "{} cpu worker(s) at {}% in {}",
            params.workers,
            params.load_percent,
            params.cgroup.as_deref().unwrap_or("the agent's cgroup")
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(StressCpu);
