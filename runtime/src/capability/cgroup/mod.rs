//! The `cgroup` capability.

#[cfg(target_os = "linux")]
pub mod linux;
