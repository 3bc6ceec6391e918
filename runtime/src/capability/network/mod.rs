//! The `network` capability.

#[cfg(target_os = "linux")]
pub mod linux;
