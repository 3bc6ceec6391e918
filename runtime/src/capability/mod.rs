//! Capability interfaces: linker glue, scope check and OS backend, one module each.

pub mod cgroup;
pub mod network;
pub mod process;
