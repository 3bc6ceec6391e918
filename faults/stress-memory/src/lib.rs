//! `stress-memory`: allocates, touches and holds memory with the agent's own load workers,
//! optionally inside a cgroup; revert kills them and the memory is freed.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, log, process, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `stress-memory`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// Worker processes (1 to 64).
    #[serde(default = "one")]
    workers: u32,
    /// Bytes each worker allocates, touches and holds (at least 1).
    bytes: u64,
    /// Cgroup to place the workers in (charged to its memory limit); none for the agent's own.
    #[serde(default)]
    cgroup: Option<String>,
}

fn one() -> u32 {
    1
}

struct StressMemory;

impl Fault for StressMemory {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Allocates and holds memory with load workers";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Process];

    fn validate(params: &Params) -> Result<(), Error> {
        process::check_workers(params.workers)?;
        if params.bytes == 0 {
            return Err(Error::invalid("`bytes` must be at least 1"));
        }
        params.cgroup.as_deref().map_or(Ok(()), cgroup::check_path)
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let change = process::start_stress(&process::StressSpec {
            kind: process::StressKind::Memory,
            workers: params.workers,
            load_percent: 0,
            memory_bytes: params.bytes,
            cgroup: params.cgroup.clone(),
        })?;
        log::info(format!(
            "{} memory worker(s) holding {} bytes each in {}",
            params.workers,
            params.bytes,
            params.cgroup.as_deref().unwrap_or("the agent's cgroup")
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(StressMemory);
