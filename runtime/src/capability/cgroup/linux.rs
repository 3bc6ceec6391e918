//! Linux backend of the `cgroup` capability: resource limits, freeze and thaw on cgroup v1, v2
//! and hybrid layouts (v1 controllers plus a v2 hierarchy, as on Debian 11/12 with systemd's
//! hybrid mode).
//!
//! The layout is read from `/proc/self/mountinfo`, never assumed. Each setting uses one
//! hierarchy: the controller's v1 hierarchy when the controller is bound to v1 (a controller
//! lives in one place at a time), else v2 when the target's `cgroup.controllers` lists it.
//!
//! | setting | v1 file(s)                                                          | v2 file         |
//! |---------|---------------------------------------------------------------------|-----------------|
//! | cpu     | `cpu.cfs_period_us`, `cpu.cfs_quota_us`                             | `cpu.max`       |
//! | memory  | `memory.limit_in_bytes`                                             | `memory.max`    |
//! | pids    | `pids.max`                                                          | `pids.max`      |
//! | io      | `blkio.throttle.read_bps_device`, `blkio.throttle.write_bps_device` | `io.max`        |
//! | freeze  | `freezer.state` (reads `freezer.self_freezing`)                     | `cgroup.freeze` (waits on `cgroup.events`) |
//!
//! Freeze prefers v2 `cgroup.freeze` when the target's v2 cgroup exists and is not the root,
//! else the v1 freezer.
//!
//! Every file is reached through a [`cap_std::fs::Dir`] opened at the granted subtree, so no path
//! (`..`, symlinks) can leave it; paths with `.` or `..` components are refused outright.
//!
//! A memory limit below the cgroup's current usage is allowed, since squeezing memory is the
//! point of the fault: v1 reclaims and fails the write with `EBUSY` (reported as `failed`) when
//! it cannot; v2 reclaims and then OOM-kills tasks in the target cgroup.
//!
//! ```no_run
//! use faultline::capability::cgroup::linux::{CgroupBackend, Setting, Target};
//!
//! # fn main() -> Result<(), faultline::capability::CapError> {
//! let backend = CgroupBackend::new()?;
//! let target = Target::Path("/system.slice/nginx.service".to_string());
//! let setting = Setting::CpuLimit { millicores: 200 };
//! let inverse = backend.prepare(&target, &setting, &["/system.slice".to_string()])?;
//! // The caller journals `inverse` (it is serde-serialisable) before applying.
//! backend.apply(&target, &setting, &inverse)?;
//! backend.undo(&inverse)?;
//! # Ok(())
//! # }
//! ```

mod hierarchy;
mod plan;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use cap_std::fs::{Dir, MetadataExt, OpenOptions};
use serde::{Deserialize, Serialize};

use self::hierarchy::{
    Hierarchy, check_scope, locate, normalize, parse_mountinfo, parse_proc_cgroup, relative, within,
};
use self::plan::{plan, validate};
use crate::capability::{CapError, CapResult};

/// How long a freeze may take before it is rolled back and reported as failed.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The cgroup this process is in (per controller on v1).
    Pid(u32),
    /// A cgroup path relative to the hierarchy root, e.g. `/system.slice/x.service`.
    Path(String),
}

/// A cgroup as the backend resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Path relative to the hierarchy root.
    pub path: String,
    /// 1 or 2: the hierarchy the path belongs to.
    pub version: u8,
    /// Controllers available there: v1, the hierarchy's; v2, the cgroup's `cgroup.controllers`.
    pub controllers: Vec<String>,
}

/// A change to make to a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Setting {
    /// Limits CPU to `millicores` thousandths of a core.
    CpuLimit {
        /// Thousandths of a core, at least 1.
        millicores: u32,
    },
    /// Limits memory to `bytes`.
    MemoryLimit {
        /// The limit, at least 1.
        bytes: u64,
    },
    /// Limits the number of tasks.
    PidsLimit {
        /// The most tasks the cgroup may hold.
        max: u64,
    },
    /// Limits block IO on one device in bytes per second; 0 leaves a direction unlimited.
    IoLimit {
        /// The block device as `major:minor`.
        device: String,
        /// Read bytes per second, 0 for unlimited.
        read_bps: u64,
        /// Write bytes per second, 0 for unlimited.
        write_bps: u64,
    },
    /// Freezes every task in the cgroup; undoing thaws it.
    Freeze,
}

/// One cgroup file a change touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// The file's name in the cgroup directory, e.g. `cpu.max`.
    pub file: String,
    /// Its full contents before the change, byte for byte.
    pub previous: String,
    /// What `apply` writes.
    pub apply: String,
    /// What `undo` writes to bring back `previous` (files like `io.max` take one line per write).
    pub restore: String,
}

/// Everything needed to undo a change, in a fresh process or after a reboot: which hierarchy,
/// which cgroup, and the exact previous contents of each file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inverse {
    /// The setting this inverse was prepared for.
    pub setting: Setting,
    /// 1 or 2.
    pub version: u8,
    /// v1: the controller whose hierarchy holds the files (`cpu`, `memory`, `pids`, `blkio`,
    /// `freezer`); v2: none.
    pub controller: Option<String>,
    /// The granted subtree that file access is confined to.
    pub subtree: String,
    /// The cgroup, relative to the hierarchy root.
    pub path: String,
    /// Inode number of the cgroup's directory when prepared: a cgroup removed and created again
    /// under the same name has another, and counts as gone.
    pub cgroup_id: u64,
    /// The files, in the order `apply` writes them (`undo` goes in reverse).
    pub files: Vec<FileChange>,
}

/// The cgroup backend: the hierarchies mounted on this host.
#[derive(Debug, Clone)]
pub struct CgroupBackend {
    hierarchies: Vec<Hierarchy>,
}

/// Where a setting goes: a hierarchy (index into `hierarchies`) and a canonical path in it.
struct Placement {
    hierarchy: usize,
    controller: Option<&'static str>,
    path: String,
}

impl CgroupBackend {
    /// Detects the mounted cgroup hierarchies from `/proc/self/mountinfo`.
    pub fn new() -> CapResult<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| CapError::Failed(format!("failed to read /proc/self/mountinfo: {e}")))?;
        Self::from_mountinfo(&text)
    }

    /// A backend for the cgroup mounts listed in `mountinfo` (the format of
    /// `/proc/self/mountinfo`).
    pub fn from_mountinfo(mountinfo: &str) -> CapResult<Self> {
        let hierarchies = parse_mountinfo(mountinfo);
        if hierarchies.is_empty() {
            return Err(CapError::Unsupported(
                "no cgroup hierarchy is mounted".to_string(),
            ));
        }
        Ok(Self { hierarchies })
    }

    /// Resolves a target; one entry per hierarchy that holds it. Reads only.
    pub fn resolve(&self, target: &Target) -> CapResult<Vec<CgroupInfo>> {
        let mut found = Vec::new();
        for (i, h) in self.hierarchies.iter().enumerate() {
            let path = match self.path_in(target, i) {
                Ok(path) => path,
                Err(CapError::TargetGone(_)) if matches!(target, Target::Pid(_)) => continue,
                Err(e) => return Err(e),
            };
            let Ok(dir) = self.open(i, "/", &path) else {
                continue;
            };
            let controllers = if h.version == 2 {
                dir.read_to_string("cgroup.controllers")
                    .map(|c| c.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default()
            } else {
                h.controllers.clone()
            };
            found.push(CgroupInfo {
                path,
                version: h.version,
                controllers,
            });
        }
        if found.is_empty() {
            return Err(CapError::TargetGone(format!(
                "{} is in no mounted cgroup hierarchy",
                describe(target)
            )));
        }
        Ok(found)
    }

    /// Resolves, checks the cgroup lies inside one of `allowed` subtrees (paths relative to the
    /// hierarchy root; "/" = all) and is neither the root cgroup nor one holding the agent, and
    /// reads the current value(s). Changes nothing.
    pub fn prepare(
        &self,
        target: &Target,
        setting: &Setting,
        allowed: &[impl AsRef<str>],
    ) -> CapResult<Inverse> {
        validate(setting)?;
        let place = self.place(target, setting)?;
        let agent = self.agent_path(place.hierarchy)?;
        let subtree = check_scope(&place.path, allowed, agent.as_deref())?;
        let dir = self.open(place.hierarchy, &subtree, &place.path)?;
        let version = self.hierarchy(place.hierarchy)?.version;
        let files = plan(&dir, &place.path, setting, version)?;
        Ok(Inverse {
            setting: setting.clone(),
            version,
            controller: place.controller.map(str::to_string),
            subtree,
            cgroup_id: cgroup_id(&dir, &place.path)?,
            path: place.path,
            files,
        })
    }

    /// Makes the change `prepare` planned. The target must still resolve to the prepared cgroup.
    /// If a write fails midway, or a freeze does not complete within 5 s, the files already
    /// written are restored before the error is returned.
    pub fn apply(&self, target: &Target, setting: &Setting, inverse: &Inverse) -> CapResult<()> {
        if inverse.setting != *setting {
            return Err(CapError::Invalid(format!(
                "the inverse was prepared for {:?}, not {setting:?}",
                inverse.setting
            )));
        }
        let place = self.place(target, setting)?;
        let version = self.hierarchy(place.hierarchy)?.version;
        if place.path != inverse.path
            || version != inverse.version
            || place.controller != inverse.controller.as_deref()
        {
            return Err(CapError::Failed(format!(
                "{} now resolves to cgroup {} (v{version}), not the prepared {} (v{})",
                describe(target),
                place.path,
                inverse.path,
                inverse.version
            )));
        }
        let dir = self.open(place.hierarchy, &inverse.subtree, &inverse.path)?;
        if cgroup_id(&dir, &inverse.path)? != inverse.cgroup_id {
            return Err(CapError::TargetGone(format!(
                "cgroup {} was removed and created again since it was prepared",
                inverse.path
            )));
        }
        for (n, change) in inverse.files.iter().enumerate() {
            if let Err(e) = write_file(&dir, &change.file, &change.apply) {
                let _ = restore(&dir, &inverse.files[..n]);
                return Err(io_error(
                    e,
                    &format!(
                        "failed to write {:?} to {} of cgroup {}",
                        change.apply, change.file, inverse.path
                    ),
                ));
            }
        }
        if *setting == Setting::Freeze && !wait_frozen(&dir, version)? {
            let _ = restore(&dir, &inverse.files);
            return Err(CapError::Failed(format!(
                "cgroup {} did not freeze within {FREEZE_TIMEOUT:?}; thawed it again",
                inverse.path
            )));
        }
        Ok(())
    }

    /// Restores exactly the previous values. Idempotent; works in a fresh process; a cgroup that
    /// is gone (or was created again under the same name) counts as undone.
    pub fn undo(&self, inverse: &Inverse) -> CapResult<()> {
        let Some(dir) = self.open_inverse(inverse)? else {
            return Ok(());
        };
        restore(&dir, &inverse.files).map_err(|(change, e)| {
            let by_hand = self
                .find(inverse.version, inverse.controller.as_deref())
                .map(|h| {
                    let file = h
                        .mount
                        .join(inverse.path.trim_start_matches('/'))
                        .join(&change.file);
                    format!(
                        "; restore by hand: echo '{}' > {}",
                        change.restore,
                        file.display()
                    )
                })
                .unwrap_or_default();
            CapError::Failed(format!(
                "failed to restore {} of cgroup {} to {:?}: {e}{by_hand}",
                change.file, inverse.path, change.restore
            ))
        })
    }

    /// What a person runs to undo `inverse` when the host cannot: the exact writes, newest first.
    pub fn manual_steps(&self, inverse: &Inverse) -> String {
        let mount = self
            .hierarchies
            .iter()
            .find(|h| h.is(inverse.version, inverse.controller.as_deref()))
            .map(|h| h.mount.display().to_string())
            .unwrap_or_else(|| match &inverse.controller {
                Some(c) => format!("/sys/fs/cgroup/{c}"),
                None => "/sys/fs/cgroup".to_string(),
            });
        let dir = format!("{mount}/{}", inverse.path.trim_start_matches('/'));
        inverse
            .files
            .iter()
            .rev()
            .map(|f| {
                format!(
                    "echo '{}' > {dir}/{}",
                    f.restore.trim_end().replace('\'', "'\\''"),
                    f.file
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether the change is still present: the cgroup exists (the same one, not one created
    /// again under the same name, e.g. after a reboot) and a file no longer holds its previous
    /// contents.
    pub fn is_present(&self, inverse: &Inverse) -> CapResult<bool> {
        let Some(dir) = self.open_inverse(inverse)? else {
            return Ok(false);
        };
        for change in &inverse.files {
            match dir.read_to_string(&change.file) {
                Ok(now) if now != change.previous => return Ok(true),
                Ok(_) => {}
                Err(e) if gone(&e) => return Ok(false),
                Err(e) => {
                    return Err(io_error(
                        e,
                        &format!("failed to read {} of cgroup {}", change.file, inverse.path),
                    ));
                }
            }
        }
        Ok(false)
    }

    /// Moves `pids` into the cgroup at `path` in every hierarchy that has it (each v1
    /// controller's and v2), after the same scope checks as [`CgroupBackend::prepare`]. Returns
    /// the hierarchies it was placed in.
    pub fn attach(
        &self,
        path: &str,
        pids: &[u32],
        allowed: &[impl AsRef<str>],
    ) -> CapResult<Vec<CgroupInfo>> {
        let path = normalize(path)?;
        let mut dirs = Vec::new();
        for i in 0..self.hierarchies.len() {
            let agent = self.agent_path(i)?;
            let subtree = check_scope(&path, allowed, agent.as_deref())?;
            match self.open(i, &subtree, &path) {
                Ok(dir) => dirs.push((i, dir)),
                Err(CapError::TargetGone(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if dirs.is_empty() {
            return Err(CapError::TargetGone(format!(
                "cgroup {path} exists in no mounted hierarchy"
            )));
        }
        let mut placed = Vec::new();
        for (i, dir) in dirs {
            let h = self.hierarchy(i)?;
            for pid in pids {
                write_file(&dir, "cgroup.procs", &pid.to_string()).map_err(|e| {
                    io_error(
                        e,
                        &format!(
                            "failed to move process {pid} into cgroup {path} (v{})",
                            h.version
                        ),
                    )
                })?;
            }
            placed.push(CgroupInfo {
                path: path.clone(),
                version: h.version,
                controllers: h.controllers.clone(),
            });
        }
        Ok(placed)
    }

    /// The cgroups at or below `path` (canonical) in every hierarchy that has it, at most
    /// `limit` in all, with the total count: what a subtree grant reaches right now (for
    /// `faultline policy explain`). Reads directories only.
    pub fn subtree(&self, path: &str, limit: usize) -> (Vec<CgroupInfo>, usize) {
        let mut found = Vec::new();
        let mut total = 0;
        for h in &self.hierarchies {
            let base = h.mount.join(path.trim_start_matches('/'));
            let mut stack = vec![(base, path.to_string())];
            while let Some((dir, cgroup)) = stack.pop() {
                if !dir.is_dir() {
                    continue;
                }
                total += 1;
                if found.len() < limit {
                    found.push(CgroupInfo {
                        path: cgroup.clone(),
                        version: h.version,
                        controllers: h.controllers.clone(),
                    });
                }
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let child = format!("{}/{name}", cgroup.trim_end_matches('/'));
                        stack.push((e.path(), child));
                    }
                }
            }
        }
        (found, total)
    }

    fn hierarchy(&self, i: usize) -> CapResult<&Hierarchy> {
        self.hierarchies
            .get(i)
            .ok_or_else(|| CapError::Failed(format!("no cgroup hierarchy number {i}")))
    }

    fn find(&self, version: u8, controller: Option<&str>) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.is(version, controller))
    }

    fn position(&self, version: u8, controller: Option<&str>) -> Option<usize> {
        self.hierarchies
            .iter()
            .position(|h| h.is(version, controller))
    }

    /// The canonical path of `target` in hierarchy `i`.
    fn path_in(&self, target: &Target, i: usize) -> CapResult<String> {
        match target {
            Target::Path(path) => normalize(path),
            Target::Pid(0) => Err(CapError::Invalid("pid 0 is not a process".to_string())),
            Target::Pid(pid) => {
                let h = self.hierarchy(i)?;
                let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        CapError::TargetGone(format!("process {pid} is gone"))
                    } else {
                        CapError::Failed(format!("failed to read /proc/{pid}/cgroup: {e}"))
                    }
                })?;
                let path = locate(&parse_proc_cgroup(&text), h).ok_or_else(|| {
                    CapError::TargetGone(format!(
                        "process {pid} is in no cgroup visible under {}",
                        h.mount.display()
                    ))
                })?;
                normalize(&path)
            }
        }
    }

    /// The agent's own cgroup in hierarchy `i`, None if that mount does not show it.
    fn agent_path(&self, i: usize) -> CapResult<Option<String>> {
        let h = self.hierarchy(i)?;
        let me = std::process::id();
        let text = std::fs::read_to_string(format!("/proc/{me}/cgroup"))
            .map_err(|e| CapError::Failed(format!("failed to read the agent's own cgroup: {e}")))?;
        Ok(locate(&parse_proc_cgroup(&text), h))
    }

    /// Chooses the hierarchy and cgroup a setting goes to.
    fn place(&self, target: &Target, setting: &Setting) -> CapResult<Placement> {
        let (v1, v2) = match setting {
            Setting::CpuLimit { .. } => ("cpu", "cpu"),
            Setting::MemoryLimit { .. } => ("memory", "memory"),
            Setting::PidsLimit { .. } => ("pids", "pids"),
            Setting::IoLimit { .. } => ("blkio", "io"),
            Setting::Freeze => return self.place_freeze(target),
        };
        if let Some(i) = self.position(1, Some(v1)) {
            let path = self.path_in(target, i)?;
            return Ok(Placement {
                hierarchy: i,
                controller: Some(v1),
                path,
            });
        }
        let Some(i) = self.position(2, None) else {
            return Err(CapError::Unsupported(format!(
                "no {v1} controller is mounted (neither cgroup v1 nor v2)"
            )));
        };
        let path = self.path_in(target, i)?;
        let dir = self.open(i, "/", &path)?;
        let enabled = dir
            .read_to_string("cgroup.controllers")
            .map_err(|e| io_error(e, &format!("failed to read cgroup.controllers of {path}")))?;
        if !enabled.split_whitespace().any(|c| c == v2) {
            return Err(CapError::Unsupported(format!(
                "the {v2} controller is not enabled for cgroup {path} (cgroup v2; see the parent's cgroup.subtree_control)"
            )));
        }
        Ok(Placement {
            hierarchy: i,
            controller: None,
            path,
        })
    }

    /// Freeze: v2 `cgroup.freeze` when the target's v2 cgroup exists and is not the root (the
    /// root has no `cgroup.freeze`), else the v1 freezer.
    fn place_freeze(&self, target: &Target) -> CapResult<Placement> {
        if let Some(i) = self.position(2, None) {
            let path = self.path_in(target, i)?;
            let has_freeze = path != "/"
                && self
                    .open(i, "/", &path)
                    .is_ok_and(|dir| dir.metadata("cgroup.freeze").is_ok());
            if has_freeze {
                return Ok(Placement {
                    hierarchy: i,
                    controller: None,
                    path,
                });
            }
        }
        if let Some(i) = self.position(1, Some("freezer")) {
            let path = self.path_in(target, i)?;
            return Ok(Placement {
                hierarchy: i,
                controller: Some("freezer"),
                path,
            });
        }
        Err(CapError::Unsupported(format!(
            "{} cannot be frozen: no v1 freezer is mounted and its v2 cgroup has no cgroup.freeze",
            describe(target)
        )))
    }

    /// Opens cgroup `path` of hierarchy `i` through a directory handle rooted at `subtree`, so
    /// nothing outside the subtree can be reached.
    fn open(&self, i: usize, subtree: &str, path: &str) -> CapResult<Dir> {
        let h = self.hierarchy(i)?;
        let subtree = normalize(subtree)?;
        let path = normalize(path)?;
        if !within(&path, &subtree) {
            return Err(CapError::Denied(format!(
                "cgroup {path} is outside the subtree {subtree}"
            )));
        }
        let base = h.mount.join(subtree.trim_start_matches('/'));
        let base = Dir::open_ambient_dir(&base, cap_std::ambient_authority()).map_err(|e| {
            io_error(
                e,
                &format!(
                    "failed to open cgroup {subtree} under {}",
                    h.mount.display()
                ),
            )
        })?;
        let rest = relative(&path, &subtree);
        if rest.is_empty() {
            return Ok(base);
        }
        base.open_dir(rest).map_err(|e| {
            io_error(
                e,
                &format!("failed to open cgroup {path} under {}", h.mount.display()),
            )
        })
    }

    /// The inverse's cgroup directory, None when it (or its hierarchy) is gone or was created
    /// again under the same name.
    fn open_inverse(&self, inverse: &Inverse) -> CapResult<Option<Dir>> {
        let Some(i) = self.position(inverse.version, inverse.controller.as_deref()) else {
            return Ok(None);
        };
        let dir = match self.open(i, &inverse.subtree, &inverse.path) {
            Ok(dir) => dir,
            Err(CapError::TargetGone(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match cgroup_id(&dir, &inverse.path) {
            Ok(id) if id == inverse.cgroup_id => Ok(Some(dir)),
            Ok(_) | Err(CapError::TargetGone(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Writes a cgroup file in one `write`, as cgroup files want.
fn write_file(dir: &Dir, file: &str, value: &str) -> io::Result<()> {
    // Truncating is a no-op on cgroup files (shells do it on every `echo >`), and keeps plain
    // files in the unit tests' fake hierarchies exact.
    let mut f = dir.open_with(file, OpenOptions::new().write(true).truncate(true))?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::other(format!(
            "short write to {file}: {n} of {} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Writes back the `restore` values, last change first. Some files constrain each other (a v1
/// quota is checked against its period), so a failed write is retried once after the others.
/// A file or device that is gone counts as restored.
fn restore<'a>(dir: &Dir, files: &'a [FileChange]) -> Result<(), (&'a FileChange, io::Error)> {
    let mut failed = Vec::new();
    for change in files.iter().rev() {
        match write_file(dir, &change.file, &change.restore) {
            Ok(()) => {}
            Err(e) if gone(&e) => {}
            Err(_) => failed.push(change),
        }
    }
    for change in failed {
        match write_file(dir, &change.file, &change.restore) {
            Ok(()) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err((change, e)),
        }
    }
    Ok(())
}

/// Waits until every task in the cgroup is frozen; false when that takes longer than
/// [`FREEZE_TIMEOUT`].
fn wait_frozen(dir: &Dir, version: u8) -> CapResult<bool> {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        let frozen = if version == 1 {
            let state = dir
                .read_to_string("freezer.state")
                .map_err(|e| io_error(e, "failed to read freezer.state"))?;
            if state.trim() == "FREEZING" {
                // v1 retries freezing the tasks that were busy on each write of FROZEN.
                let _ = write_file(dir, "freezer.state", "FROZEN");
            }
            state.trim() == "FROZEN"
        } else {
            dir.read_to_string("cgroup.events")
                .map_err(|e| io_error(e, "failed to read cgroup.events"))?
                .lines()
                .any(|l| l.trim() == "frozen 1")
        };
        if frozen {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The inode number of a cgroup directory, unique per cgroup while the system runs.
fn cgroup_id(dir: &Dir, path: &str) -> CapResult<u64> {
    dir.dir_metadata()
        .map(|m| m.ino())
        .map_err(|e| io_error(e, &format!("failed to stat cgroup {path}")))
}

/// Whether an error says the cgroup, file or device is no longer there.
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Maps an IO error onto the capability's error kinds.
fn io_error(e: io::Error, what: &str) -> CapError {
    let message = format!("{what}: {e}");
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => CapError::TargetGone(message),
        Some(libc::EINVAL) | Some(libc::ERANGE) | Some(libc::ENODEV) => CapError::Invalid(message),
        _ => CapError::Failed(message),
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Pid(pid) => format!("process {pid}"),
        Target::Path(path) => format!("cgroup {path}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    fn backend_send_sync<T: Send + Sync>() {}

    /// Writes `files` (name, contents) under `root`, creating directories.
    fn fake(root: &Path, files: &[(&str, &str)]) {
        for (name, contents) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
    }

    /// Prepares, applies and undoes `setting` on `/a`; returns the inverse and the applied
    /// contents of its first file.
    fn round_trip(backend: &CgroupBackend, root: &Path, setting: Setting) -> (Inverse, String) {
        let target = Target::Path("/a".to_string());
        let inverse = backend
            .prepare(&target, &setting, &["/a".to_string()])
            .unwrap();
        let file = root.join("a").join(&inverse.files[0].file);
        let before = std::fs::read_to_string(&file).unwrap();
        backend.apply(&target, &setting, &inverse).unwrap();
        let applied = std::fs::read_to_string(&file).unwrap();
        assert!(backend.is_present(&inverse).unwrap());
        backend.undo(&inverse).unwrap();
        // Plain files keep what was written; cgroup files print it back with a newline.
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before.trim_end());
        (inverse, applied)
    }

    #[test]
    fn pure_v2_uses_the_v2_files() {
        backend_send_sync::<CgroupBackend>();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake(
            root,
            &[
                ("cgroup.controllers", "cpu io memory pids\n"),
                ("a/cgroup.controllers", "cpu io memory pids\n"),
                ("a/cpu.max", "max 100000\n"),
                ("a/memory.max", "max\n"),
                ("a/pids.max", "max\n"),
                ("a/io.max", "8:0 rbps=5 wbps=max riops=max wiops=max\n"),
                ("a/cgroup.freeze", "0\n"),
                ("a/cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        let mountinfo = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw", root.display());
        let backend = CgroupBackend::from_mountinfo(&mountinfo).unwrap();
        let cases = [
            (Setting::CpuLimit { millicores: 250 }, "25000 100000"),
            (Setting::MemoryLimit { bytes: 4096 }, "4096"),
            (Setting::PidsLimit { max: 3 }, "3"),
            (
                Setting::IoLimit {
                    device: "8:0".to_string(),
                    read_bps: 0,
                    write_bps: 7,
                },
                "8:0 rbps=max wbps=7",
            ),
            (Setting::Freeze, "1"),
        ];
        for (setting, expect) in cases {
            let (inverse, applied) = round_trip(&backend, root, setting);
            assert_eq!((inverse.version, inverse.controller), (2, None));
            assert_eq!(inverse.subtree, "/a");
            assert_eq!(applied, expect);
        }
        let io = Setting::IoLimit {
            device: "8:16".to_string(),
            read_bps: 1,
            write_bps: 0,
        };
        let inverse = backend.prepare(&Target::Path("/a".to_string()), &io, &["/".to_string()]);
        assert_eq!(
            inverse.unwrap().files[0].restore,
            "8:16 rbps=max wbps=max riops=max wiops=max"
        );
        let info = backend.resolve(&Target::Path("/a".to_string())).unwrap();
        assert_eq!(info[0].controllers, ["cpu", "io", "memory", "pids"]);
    }

    #[test]
    fn hybrid_prefers_v1_controllers_and_v2_freeze() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake(
            root,
            &[
                ("cpu/a/cpu.cfs_period_us", "100000\n"),
                ("cpu/a/cpu.cfs_quota_us", "-1\n"),
                ("unified/cgroup.controllers", "hugetlb\n"),
                ("unified/a/cgroup.controllers", "\n"),
                ("unified/a/cgroup.freeze", "0\n"),
                ("unified/a/cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        let mountinfo = format!(
            "32 31 0:29 / {0}/cpu rw - cgroup cgroup rw,cpu\n\
             41 31 0:38 / {0}/unified rw - cgroup2 cgroup2 rw",
            root.display()
        );
        let backend = CgroupBackend::from_mountinfo(&mountinfo).unwrap();
        let (inverse, applied) = round_trip(
            &backend,
            &root.join("cpu"),
            Setting::CpuLimit { millicores: 500 },
        );
        assert_eq!(
            (inverse.version, inverse.controller.as_deref()),
            (1, Some("cpu"))
        );
        assert_eq!(inverse.files[0].file, "cpu.cfs_period_us");
        assert_eq!(applied, "100000");
        let (inverse, _) = round_trip(&backend, &root.join("unified"), Setting::Freeze);
        assert_eq!(inverse.version, 2);
        // Memory is neither on v1 here nor enabled on v2.
        let memory = backend.prepare(
            &Target::Path("/a".to_string()),
            &Setting::MemoryLimit { bytes: 1 << 20 },
            &["/".to_string()],
        );
        assert!(
            matches!(memory, Err(CapError::Unsupported(_))),
            "{memory:?}"
        );
    }

    #[test]
    fn inverse_round_trips_through_json() {
        let inverse = Inverse {
            setting: Setting::Freeze,
            version: 2,
            controller: None,
            subtree: "/".to_string(),
            path: "/a".to_string(),
            cgroup_id: 7,
            files: vec![FileChange {
                file: "cgroup.freeze".to_string(),
                previous: "0\n".to_string(),
                apply: "1".to_string(),
                restore: "0".to_string(),
            }],
        };
        let json = serde_json::to_string(&inverse).unwrap();
        assert_eq!(serde_json::from_str::<Inverse>(&json).unwrap(), inverse);
    }
}
