//! Find processes and signal them, through the host's `process` capability.

pub use crate::bindings::faultline::contract::process::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::process::{find, send_signal, start_stress};

use crate::Error as ContractError;
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters that pick target processes: exactly one of `pid`, `name` or `cmdline`. Flatten it
/// into a fault's parameters with `#[serde(flatten)]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct Target {
    /// Process id of the target.
    pub pid: Option<u32>,
    /// Processes whose name (`/proc/<pid>/comm`) equals this.
    pub name: Option<String>,
    /// Processes whose command line (arguments joined by spaces) matches this regex.
    pub cmdline: Option<String>,
}

impl Target {
    /// The host selector these parameters name.
    pub fn selector(&self) -> Result<Selector, ContractError> {
        match (self.pid, &self.name, &self.cmdline) {
            (Some(pid), None, None) => Ok(Selector::Pid(pid)),
            (None, Some(name), None) => Ok(Selector::Name(name.clone())),
            (None, None, Some(pattern)) => Ok(Selector::Cmdline(pattern.clone())),
            _ => Err(ContractError::invalid(
                "give exactly one of `pid`, `name` or `cmdline`",
            )),
        }
    }

    /// Finds the processes in scope, at most `max` of them (0: all); none found is an error.
    pub fn find(&self, max: u32) -> Result<Vec<ProcessInfo>, ContractError> {
        let mut found = find(&self.selector()?)?;
        if found.is_empty() {
            return Err(ContractError::target_gone(
                "no process in scope matches the selector",
            ));
        }
        if max > 0 {
            found.truncate(max as usize);
        }
        Ok(found)
    }
}

/// Most stress workers one `start-stress` call may start.
pub const MAX_STRESS_WORKERS: u32 = 64;

/// Whether the process `pid` that started at `start_time` is still there: the same process
/// (not a new one that reused the pid) and not a zombie.
pub fn alive(pid: u32, start_time: u64) -> Result<bool, ContractError> {
    Ok(find(&Selector::Pid(pid))?
        .iter()
        .any(|p| p.start_time == start_time && p.state != "Z"))
}

/// Checks a stress worker count parameter: 1 to [`MAX_STRESS_WORKERS`].
pub fn check_workers(workers: u32) -> Result<(), ContractError> {
    if (1..=MAX_STRESS_WORKERS).contains(&workers) {
        Ok(())
    } else {
        Err(ContractError::invalid(format!(
            "`workers` must be 1 to {MAX_STRESS_WORKERS}, not {workers}"
        )))
    }
}
