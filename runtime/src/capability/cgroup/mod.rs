//! The `cgroup` capability: limits, freeze and thaw on cgroup v1 and v2.
//!
//! Scope: the policy's cgroup subtrees. The backend resolves the target, refuses anything
//! outside the subtrees (and the root and the agent's own cgroups, whatever the policy says),
//! records the exact previous file contents, and opens files only through a `Dir` rooted at the
//! granted subtree.

#[cfg(target_os = "linux")]
pub mod linux;

use super::{Backends, CapResult, Change, Context, GuestResult, Inverse};
use crate::contract::cgroup::{CgroupInfo, Host, Target};
use linux::Setting;

fn target(t: Target) -> linux::Target {
    match t {
        Target::Pid(p) => linux::Target::Pid(p),
        Target::Path(p) => linux::Target::Path(p),
    }
}

impl Context {
    fn cgroup_backend(&self) -> CapResult<&linux::CgroupBackend> {
        self.backends.cgroup.as_ref().map_err(|e| e.clone())
    }

    /// Resolves a target to its cgroups (no scope needed: it changes nothing).
    pub fn resolve_cgroup(&self, t: Target) -> CapResult<Vec<CgroupInfo>> {
        let found = self.cgroup_backend()?.resolve(&target(t))?;
        Ok(found
            .into_iter()
            .map(|c| CgroupInfo {
                path: c.path,
                version: c.version,
                controllers: c.controllers,
            })
            .collect())
    }

    /// Applies a setting, journalled with the exact values it replaces.
    pub fn set_cgroup(&mut self, t: Target, setting: Setting) -> CapResult<u64> {
        let t = target(t);
        if self.grants.cgroup.is_empty() {
            return Err(self.denied("every cgroup"));
        }
        let backend = self.cgroup_backend()?;
        let inverse = backend.prepare(&t, &setting, &self.grants.cgroup)?;
        let summary = format!("cgroup {}: {setting:?}", inverse.path);
        let backends = self.backends.clone();
        self.change(&summary, Inverse::Cgroup(inverse.clone()), || {
            backends
                .cgroup
                .as_ref()
                .map_err(|e| e.clone())?
                .apply(&t, &setting, &inverse)
        })
    }
}

impl Host for Context {
    async fn resolve(&mut self, t: Target) -> GuestResult<Vec<CgroupInfo>> {
        self.blocking(move |c| c.resolve_cgroup(t)).await
    }

    async fn set_cpu_limit(&mut self, t: Target, millicores: u32) -> GuestResult<u64> {
        self.blocking(move |c| c.set_cgroup(t, Setting::CpuLimit { millicores }))
            .await
    }

    async fn set_memory_limit(&mut self, t: Target, bytes: u64) -> GuestResult<u64> {
        self.blocking(move |c| c.set_cgroup(t, Setting::MemoryLimit { bytes }))
            .await
    }

    async fn set_pids_limit(&mut self, t: Target, max: u64) -> GuestResult<u64> {
        self.blocking(move |c| c.set_cgroup(t, Setting::PidsLimit { max }))
            .await
    }

    async fn set_io_limit(
        &mut self,
        t: Target,
        device: String,
        read_bps: u64,
        write_bps: u64,
    ) -> GuestResult<u64> {
        let setting = Setting::IoLimit {
            device,
            read_bps,
            write_bps,
        };
        self.blocking(move |c| c.set_cgroup(t, setting)).await
    }

    async fn freeze(&mut self, t: Target) -> GuestResult<u64> {
        self.blocking(move |c| c.set_cgroup(t, Setting::Freeze))
            .await
    }
}

impl Change for linux::Inverse {
    fn undo(&self, b: &Backends) -> CapResult<()> {
        b.cgroup.as_ref().map_err(|e| e.clone())?.undo(self)
    }

    fn is_present(&self, b: &Backends) -> bool {
        // Unknown counts as present: recovery undoes rather than drops what it cannot check.
        b.cgroup
            .as_ref()
            .is_ok_and(|c| c.is_present(self).unwrap_or(true))
    }

    fn manual_steps(&self, b: &Backends) -> String {
        match &b.cgroup {
            Ok(c) => c.manual_steps(self),
            Err(_) => format!("restore the cgroup files of {} by hand", self.path),
        }
    }
}
