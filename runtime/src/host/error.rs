//! What can go wrong when loading a component or calling into it.

use super::check::Refusal;
use crate::contract::types::Error as GuestError;
use std::time::Duration;

/// Why a call into a plug-in failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plug-in returned the contract's error.
    #[error("{phase} returned an error: {error}")]
    Guest {
        /// Which export.
        phase: &'static str,
        /// What it said.
        error: GuestErrorText,
    },
    /// The plug-in trapped (a panic, an illegal operation).
    #[error("{phase} trapped: {message}")]
    Trap {
        /// Which export.
        phase: &'static str,
        /// The trap and what the guest wrote to stderr.
        message: String,
    },
    /// The plug-in ran past its deadline and was cut off.
    #[error("{phase} ran past its deadline of {limit:?} and was cut off")]
    Deadline {
        /// Which export.
        phase: &'static str,
        /// The deadline.
        limit: Duration,
    },
    /// The plug-in tried to grow its memory past the cap.
    #[error("{phase} exceeded the memory limit of {limit} bytes (asked for {asked})")]
    MemoryLimit {
        /// Which export.
        phase: &'static str,
        /// The cap.
        limit: usize,
        /// What it asked for.
        asked: usize,
    },
    /// The plug-in returned more state than the host keeps.
    #[error("{phase} returned {size} bytes of state, more than the {limit} the host keeps")]
    StateTooLarge {
        /// Which export.
        phase: &'static str,
        /// What it returned.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The host failed (a bug or an exhausted resource).
    #[error("{phase}: host error: {message}")]
    Host {
        /// Which export.
        phase: &'static str,
        /// What failed.
        message: String,
    },
}

/// The contract's error as text, for messages and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestErrorText {
    /// `denied`, `invalid`, `unsupported`, `target-gone` or `failed`.
    pub kind: &'static str,
    /// The reason.
    pub reason: String,
}

impl std::fmt::Display for GuestErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

impl From<GuestError> for GuestErrorText {
    fn from(e: GuestError) -> Self {
        let (kind, reason) = match e {
            GuestError::Denied(r) => ("denied", r),
            GuestError::Invalid(r) => ("invalid", r),
            GuestError::Unsupported(r) => ("unsupported", r),
            GuestError::TargetGone(r) => ("target-gone", r),
            GuestError::Failed(r) => ("failed", r),
        };
        GuestErrorText { kind, reason }
    }
}

/// Why loading a component failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component breaks the contract or the policy.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Its `describe` failed.
    #[error(transparent)]
    Describe(#[from] CallError),
    /// The host could not load it.
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

pub(super) fn anyhow_of(e: wasmtime::Error) -> LoadError {
    LoadError::Host(anyhow_of_wasmtime(e))
}

/// Wasmtime's error as an `anyhow` error, keeping the whole chain in the message.
pub(crate) fn anyhow_of_wasmtime(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
