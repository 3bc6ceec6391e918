//! Cgroup limits, freeze and thaw, through the host's `cgroup` capability.

pub use crate::bindings::faultline::contract::cgroup::*;
