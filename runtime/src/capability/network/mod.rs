//! The `network` capability: delay, loss, corruption, duplication, bandwidth, blackhole,
//! reject and DNS failure, in a chosen network namespace.

#[cfg(target_os = "linux")]
pub mod linux;

use super::{CapError, Context, GuestResult, to_guest};
use crate::contract::network::{Host, Traffic};

fn not_yet<T>() -> GuestResult<T> {
    to_guest(Err(CapError::Unsupported(
        "the network backend is not available in this build".into(),
    )))
}

impl Host for Context {
    async fn add_delay(&mut self, _t: Traffic, _d: u32, _j: u32) -> GuestResult<u64> {
        not_yet()
    }
    async fn add_loss(&mut self, _t: Traffic, _p: f32) -> GuestResult<u64> {
        not_yet()
    }
    async fn add_corruption(&mut self, _t: Traffic, _p: f32) -> GuestResult<u64> {
        not_yet()
    }
    async fn add_duplication(&mut self, _t: Traffic, _p: f32) -> GuestResult<u64> {
        not_yet()
    }
    async fn limit_bandwidth(&mut self, _t: Traffic, _r: u64) -> GuestResult<u64> {
        not_yet()
    }
    async fn blackhole(&mut self, _t: Traffic) -> GuestResult<u64> {
        not_yet()
    }
    async fn reject(&mut self, _t: Traffic) -> GuestResult<u64> {
        not_yet()
    }
    async fn fail_dns(&mut self, _t: Traffic) -> GuestResult<u64> {
        not_yet()
    }
}
