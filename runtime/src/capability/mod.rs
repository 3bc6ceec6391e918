//! Capability interfaces: linker glue, scope check and OS backend, one module each.

pub mod cgroup;
pub mod network;
pub mod process;

/// Why a capability operation failed; maps one-to-one onto the contract's `error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The policy does not allow it; the reason names the rule.
    #[error("denied: {0}")]
    Denied(String),
    /// A parameter is malformed or out of range.
    #[error("invalid: {0}")]
    Invalid(String),
    /// This host cannot do it (kernel module, cgroup version, missing tool).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The target process, cgroup or namespace is gone.
    #[error("target gone: {0}")]
    TargetGone(String),
    /// Anything else.
    #[error("failed: {0}")]
    Failed(String),
}

/// Result of a capability operation.
pub type CapResult<T> = Result<T, CapError>;
