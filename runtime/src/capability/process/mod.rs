//! The `process` capability.

#[cfg(target_os = "linux")]
pub mod linux;
pub mod stress;
