//! The `filesystem` capability: files in directories the policy grants, for faults.
// PLACEHOLDER (issue 9, filesystem helper replaces this whole module).

use super::{CapError, Context, GuestResult, to_guest};
use crate::contract::filesystem::{DiskSpace, Host, IoStressSpec};

impl Host for Context {
    async fn space(&mut self, _directory: String) -> GuestResult<DiskSpace> {
        to_guest(Err(CapError::Unsupported(
            "filesystem: not built yet".into(),
        )))
    }

    async fn fill(&mut self, _directory: String, _bytes: u64) -> GuestResult<u64> {
        to_guest(Err(CapError::Unsupported(
            "filesystem: not built yet".into(),
        )))
    }

    async fn start_io_stress(&mut self, _spec: IoStressSpec) -> GuestResult<u64> {
        to_guest(Err(CapError::Unsupported(
            "filesystem: not built yet".into(),
        )))
    }
}
