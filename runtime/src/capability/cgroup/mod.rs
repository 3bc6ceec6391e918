//! The `cgroup` capability: limits, freeze and thaw on cgroup v1 and v2.

#[cfg(target_os = "linux")]
pub mod linux;

use super::{CapError, Context, GuestResult, to_guest};
use crate::contract::cgroup::{CgroupInfo, Host, Target};

fn not_yet<T>() -> GuestResult<T> {
    to_guest(Err(CapError::Unsupported(
        "the cgroup backend is not available in this build".into(),
    )))
}

impl Host for Context {
    async fn resolve(&mut self, _t: Target) -> GuestResult<Vec<CgroupInfo>> {
        not_yet()
    }
    async fn set_cpu_limit(&mut self, _t: Target, _m: u32) -> GuestResult<u64> {
        not_yet()
    }
    async fn set_memory_limit(&mut self, _t: Target, _b: u64) -> GuestResult<u64> {
        not_yet()
    }
    async fn set_pids_limit(&mut self, _t: Target, _m: u64) -> GuestResult<u64> {
        not_yet()
    }
    async fn set_io_limit(&mut self, _t: Target, _d: String, _r: u64, _w: u64) -> GuestResult<u64> {
        not_yet()
    }
    async fn freeze(&mut self, _t: Target) -> GuestResult<u64> {
        not_yet()
    }
}
