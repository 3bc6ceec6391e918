//! Cgroup limits, freeze and thaw, through the host's `cgroup` capability.

pub use crate::bindings::faultline::contract::cgroup::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::cgroup::{
    freeze, resolve, set_cpu_limit, set_io_limit, set_memory_limit, set_pids_limit,
};

use crate::Error as ContractError;
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters that pick one cgroup: exactly one of `pid` or `path`. Flatten it into a fault's
/// parameters with `#[serde(flatten)]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct TargetParams {
    /// The cgroup this process is in.
    pub pid: Option<u32>,
    /// A cgroup path relative to the hierarchy root, e.g. `/system.slice/nginx.service`.
    pub path: Option<String>,
}

impl TargetParams {
    /// The host's `target` these parameters name.
    pub fn target(&self) -> Result<Target, ContractError> {
        match (self.pid, &self.path) {
            (Some(pid), None) => Ok(Target::Pid(pid)),
            (None, Some(path)) => {
                check_path(path)?;
                Ok(Target::Path(path.clone()))
            }
            _ => Err(ContractError::invalid(
                "give exactly one of `pid` or `path`",
            )),
        }
    }
}

/// Checks a cgroup path parameter: absolute, without `..`.
pub fn check_path(path: &str) -> Result<(), ContractError> {
    if path.starts_with('/') && !path.split('/').any(|c| c == "..") {
        Ok(())
    } else {
        Err(ContractError::invalid(format!(
            "cgroup path {path:?} must start with `/` and contain no `..`"
        )))
    }
}
