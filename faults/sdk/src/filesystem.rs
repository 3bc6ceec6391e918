//! Fill file systems and load them with IO, through the host's `filesystem` capability (since
//! contract 0.1.1). The capability is declared by importing it: `describe()`'s capability list
//! (frozen at 0.1.0) cannot name it, so a fault lists only its other capabilities there.

pub use crate::bindings::faultline::contract::filesystem::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::filesystem::{fill, space, start_io_stress};

use crate::Error as ContractError;

/// Checks a directory parameter: absolute, without `..` (the host refuses it anyway; this
/// says so at validation, before anything runs).
pub fn check_directory(directory: &str) -> Result<(), ContractError> {
    if directory.starts_with('/') && !directory.split('/').any(|c| c == "..") {
        Ok(())
    } else {
        Err(ContractError::invalid(format!(
            "`directory` {directory:?} must be an absolute path without `..`"
        )))
    }
}
