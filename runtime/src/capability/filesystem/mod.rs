//! The `filesystem` capability: fill file systems and load them with IO, in directories the
//! policy grants, for faults.
//!
//! Scope: a call names a directory by its absolute path; it must be a granted directory or lie
//! beneath one. The granted directory is opened without following any symlink on its way
//! (`openat2` with `RESOLVE_NO_SYMLINKS`), and the rest of the path beneath it with cap-std, so
//! neither `..` nor a symlink ever leads out of it (a `..` in the path is refused outright).
//! A fill never leaves less free space than the largest reserve of the grants covering its
//! directory (5 % of the file system when a grant sets none).
//!
//! Undo: a fill's file is created unnamed (`O_TMPFILE`), journalled with its identity (device,
//! inode, owner, birth time), allocated, and only then linked under its name; undo removes the
//! name only while it still holds that very file. IO workers write and read unnamed files in a
//! fresh subdirectory; undo kills their process group and removes the (then empty) directory.

#[cfg(target_os = "linux")]
pub mod linux;

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use super::process::stress::{self, StressInverse};
use super::{Backends, CapError, CapResult, Change, Context, GuestResult, Inverse};
use crate::contract::filesystem::{DiskSpace, Host, IoStressSpec, WorkersCgroup};
use crate::policy::Reserve;
use crate::policy::scope::canonical_lexically;
use linux::{Claim, FillInverse, MadeDirectory};

/// Largest file one IO worker may write and read.
pub const MAX_IO_FILE_BYTES: u64 = 1 << 30;

/// Most fill files one execution may have at once (a gradual `disk-fill` makes at most 100).
pub const MAX_FILLS: usize = 256;

/// Most sets of IO workers one execution may run at once.
pub const MAX_IO_STRESS: usize = 4;

/// Numbers the files of one agent apart.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A call's directory, resolved against the grants and opened beneath its granted root.
struct Resolved {
    /// As the call named it, canonical.
    path: PathBuf,
    /// The deepest granted directory holding it.
    root: PathBuf,
    /// `path` relative to `root`.
    relative: PathBuf,
    /// The reserve of each grant covering it, with the grant.
    reserves: Vec<(Reserve, String)>,
    /// The open directory.
    dir: Dir,
}

impl Resolved {
    /// The largest reserve in bytes on a file system of `total` bytes, with its reason.
    fn reserve(&self, total: u64) -> (u64, String) {
        self.reserves
            .iter()
            .map(|(r, rule)| (r.bytes(total), format!("{r} set by {rule}")))
            .max_by_key(|(b, _)| *b)
            .unwrap_or_else(|| (Reserve::DEFAULT.bytes(total), "default".to_string()))
    }

    fn space(&self) -> CapResult<linux::Space> {
        linux::space(&self.dir).map_err(|e| {
            CapError::Failed(format!(
                "failed to read the space of {}: {e}",
                self.path.display()
            ))
        })
    }
}

/// `1.5 MiB (1572864 bytes)`.
fn amount(bytes: u64) -> String {
    format!(
        "{} ({bytes} bytes)",
        bytesize::ByteSize::b(bytes).display().iec()
    )
}

/// A name part from an execution id: safe characters only, bounded.
fn name_part(execution: &str) -> String {
    execution
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Context {
    /// Resolves `directory` against the filesystem grants and opens it beneath its root.
    fn resolve_directory(&self, directory: &str) -> CapResult<Resolved> {
        if Path::new(directory)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(self.denial(format!(
                "directory {directory:?} contains `..`: name a granted directory or one beneath it by its own path ({})",
                self.grants.rules_text()
            )));
        }
        let path = canonical_lexically(directory)
            .map_err(|problem| CapError::Invalid(format!("directory {problem}")))?;
        let mut reserves = Vec::new();
        let mut root: Option<&Path> = None;
        for s in &self.grants.filesystem {
            let covering: Vec<_> = s
                .scope
                .directories
                .iter()
                .filter(|d| d.relative(&path).is_some())
                .collect();
            if covering.is_empty() {
                continue;
            }
            reserves.push((s.scope.reserve, s.rule.clone()));
            for d in covering {
                if root.is_none_or(|r| d.path().components().count() > r.components().count()) {
                    root = Some(d.path());
                }
            }
        }
        let Some(root) = root else {
            return Err(self.denied(&format!("directory {}", path.display())));
        };
        let relative = path
            .strip_prefix(root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let opened = linux::open_root(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CapError::TargetGone(format!(
                "granted directory {} no longer exists",
                root.display()
            )),
            std::io::ErrorKind::PermissionDenied => self.denial(format!(
                "granted directory {} is refused, not followed: {e} ({})",
                root.display(),
                self.grants.rules_text()
            )),
            _ => CapError::Failed(format!("cannot open {}: {e}", root.display())),
        })?;
        let dir = linux::open_beneath(&opened, &relative).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => self.denial(format!(
                "directory {} leads outside the granted directory {} (a symlink out of it): paths are resolved beneath it, never out of it ({})",
                path.display(),
                root.display(),
                self.grants.rules_text()
            )),
            std::io::ErrorKind::NotFound => {
                CapError::TargetGone(format!("directory {} does not exist", path.display()))
            }
            std::io::ErrorKind::NotADirectory => {
                CapError::Invalid(format!("{} is not a directory", path.display()))
            }
            _ => CapError::Failed(format!("cannot open {}: {e}", path.display())),
        })?;
        Ok(Resolved {
            path,
            root: root.to_path_buf(),
            relative,
            reserves,
            dir,
        })
    }

    /// The space on the file system holding a granted directory.
    pub fn disk_space(&self, directory: &str) -> CapResult<DiskSpace> {
        let s = self.resolve_directory(directory)?.space()?;
        Ok(DiskSpace {
            total_bytes: s.total,
            free_bytes: s.free,
            available_bytes: s.available,
        })
    }

    /// Refuses a change of `kind` beyond `max` outstanding in this execution's journal: a guest
    /// calling in a loop cannot litter a disk with files or a host with workers.
    fn within_limit(&self, kind: &str, max: usize, what: &str) -> CapResult<()> {
        let n = self
            .journal
            .outstanding(Some(&self.execution))
            .iter()
            .filter(|e| e.inverse.get("kind").and_then(|k| k.as_str()) == Some(kind))
            .count();
        if n >= max {
            return Err(CapError::Invalid(format!(
                "execution {} already has {n} {what}; at most {max} at once",
                self.execution
            )));
        }
        Ok(())
    }

    /// Claims `bytes` on the file system of `r` unless that would leave less than the reserve.
    fn claim(&self, r: &Resolved, bytes: u64, what: &str) -> CapResult<Claim> {
        let total = r.space()?.total;
        let (reserve, why) = r.reserve(total);
        let (claim, seen) = Claim::take(&r.dir, bytes, reserve).map_err(|e| {
            CapError::Failed(format!(
                "failed to read the space of {}: {e}",
                r.path.display()
            ))
        })?;
        claim.ok_or_else(|| {
            self.denial(format!(
                "{what} of {} in {} would leave {} available of {}, below the reserve of {} ({why})",
                amount(bytes),
                r.path.display(),
                amount(seen.available.saturating_sub(bytes)),
                amount(seen.total),
                amount(reserve),
            ))
        })
    }

    /// Creates a file of `bytes`, allocated, in a granted directory; undoing removes it.
    pub fn fill_directory(&mut self, directory: &str, bytes: u64) -> CapResult<u64> {
        if bytes == 0 {
            return Err(CapError::Invalid("bytes must be at least 1".to_string()));
        }
        let r = self.resolve_directory(directory)?;
        self.within_limit("fill", MAX_FILLS, "fill files")?;
        let _claim = self.claim(&r, bytes, "a fill")?;
        let name = format!(
            ".faultline-fill-{}-{}-{:08x}",
            name_part(&self.execution),
            SERIAL.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let file = linux::create_unlinked(&r.dir, &name).map_err(|e| {
            CapError::Failed(format!(
                "failed to create a file in {}: {e}",
                r.path.display()
            ))
        })?;
        let inverse = FillInverse {
            root: r.root.clone(),
            directory: r.relative.clone(),
            name: name.clone(),
            identity: file.identity,
            bytes,
        };
        let summary = format!(
            "fill {} with {}",
            r.path.join(&name).display(),
            amount(bytes)
        );
        // Journal first: the file has no name until its inverse is on disk, so a crash before
        // that leaves nothing (the kernel frees an unnamed file with its last descriptor).
        self.change(&summary, Inverse::Fill(inverse), || {
            file.allocate(bytes)
                .and_then(|()| file.link(&r.dir, &name))
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EDQUOT) => CapError::Failed(format!(
                        "{} has no room for {}: {e}",
                        r.path.display(),
                        amount(bytes)
                    )),
                    _ => CapError::Failed(format!(
                        "failed to allocate {} in {}: {e}",
                        amount(bytes),
                        r.path.display()
                    )),
                })
        })
    }

    /// Starts IO load workers on files in a fresh subdirectory of a granted directory.
    pub fn start_io_stress_workers(&mut self, spec: IoStressSpec) -> CapResult<u64> {
        if spec.workers == 0 || spec.workers > stress::MAX_WORKERS {
            return Err(CapError::Invalid(format!(
                "workers must be 1 to {}, not {}",
                stress::MAX_WORKERS,
                spec.workers
            )));
        }
        if spec.file_bytes == 0 || spec.file_bytes > MAX_IO_FILE_BYTES {
            return Err(CapError::Invalid(format!(
                "file-bytes must be 1 to {}, not {}",
                amount(MAX_IO_FILE_BYTES),
                spec.file_bytes
            )));
        }
        if !spec.write && !spec.read {
            return Err(CapError::Invalid(
                "IO workers must write, read or both".to_string(),
            ));
        }
        if spec.cgroup.is_some() && self.grants.cgroup.is_empty() {
            return Err(self.denied("every cgroup"));
        }
        let r = self.resolve_directory(&spec.directory)?;
        self.within_limit("io-stress", MAX_IO_STRESS, "sets of IO workers")?;
        let total = u64::from(spec.workers).saturating_mul(spec.file_bytes);
        let claim = self.claim(&r, total, "IO workers' files")?;
        let backends = self.backends.clone();
        let cgroups = backends.cgroup.as_ref().map_err(|e| e.clone())?;
        let cgroup = match &spec.cgroup {
            None => None,
            Some(WorkersCgroup::Path(p)) => Some(p.clone()),
            Some(WorkersCgroup::Pid(pid)) => {
                let found = cgroups.resolve(&super::cgroup::linux::Target::Pid(*pid))?;
                let pick = found
                    .iter()
                    .find(|c| c.version == 2)
                    .or_else(|| {
                        found
                            .iter()
                            .find(|c| c.controllers.iter().any(|x| x == "blkio"))
                    })
                    .or(found.first());
                pick.map(|c| c.path.clone())
            }
        };
        let name = format!(
            ".faultline-io-{}-{}-{:08x}",
            name_part(&self.execution),
            SERIAL.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let (made, subdir) =
            MadeDirectory::make(&r.root, &r.relative, &r.dir, &name).map_err(|e| {
                CapError::Failed(format!(
                    "failed to make {}: {e}",
                    r.path.join(&name).display()
                ))
            })?;
        let started = self.spawn_io_workers(&spec, cgroup, &subdir, &backends);
        let gated = match started {
            Ok(g) => g,
            Err(e) => {
                let _ = made.undo();
                return Err(e);
            }
        };
        drop(claim);
        let summary = format!(
            "{} IO worker(s) ({}{}) on {} each in {}, process group {}",
            spec.workers,
            if spec.write { "write" } else { "" },
            if spec.read { "+read" } else { "" },
            amount(spec.file_bytes),
            r.path.join(&name).display(),
            gated.inverse.pgid
        );
        let inverse = IoStressInverse {
            workers: gated.inverse.clone(),
            directory: made.clone(),
        };
        // Journalled before the workers get their start signal; a crash before that leaves
        // workers that exit on their closed stdin, and at most an empty directory.
        let changed = self.change(&summary, Inverse::IoStress(inverse), || gated.release());
        if changed.is_err() {
            let _ = made.undo();
        }
        changed
    }

    fn spawn_io_workers(
        &self,
        spec: &IoStressSpec,
        cgroup: Option<String>,
        subdir: &Dir,
        backends: &Backends,
    ) -> CapResult<stress::Gated> {
        let mut files = Vec::new();
        for i in 0..spec.workers {
            let name = format!("worker-{i}");
            let file = linux::create_unlinked(subdir, &name)
                .and_then(|f| f.forget_name(subdir, &name))
                .map_err(|e| CapError::Failed(format!("failed to create a worker file: {e}")))?;
            files.push(Some(file));
        }
        let cgroups = backends.cgroup.as_ref().map_err(|e| e.clone())?;
        let stress_spec = stress::StressSpec {
            kind: stress::StressKind::File,
            workers: spec.workers,
            load_percent: 0,
            memory_bytes: 0,
            cgroup,
        };
        let file_bytes = spec.file_bytes.to_string();
        stress::spawn_gated(
            &stress_spec,
            &backends.worker_exe,
            cgroups,
            &self.grants.cgroup,
            |i, command| {
                let file = files
                    .get_mut(i)
                    .and_then(Option::take)
                    .ok_or_else(|| CapError::Failed(format!("no file for IO worker {i}")))?;
                command.args(["--file-bytes", &file_bytes]);
                if spec.write {
                    command.arg("--write");
                }
                if spec.read {
                    command.arg("--read");
                }
                command.stdout(Stdio::from(file));
                Ok(())
            },
        )
    }
}

/// What undoing a `start-io-stress` needs: the workers, and the directory made for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStressInverse {
    /// The workers' process group.
    pub workers: StressInverse,
    /// Their directory.
    pub directory: MadeDirectory,
}

impl Change for FillInverse {
    fn undo(&self, _: &Backends) -> CapResult<()> {
        FillInverse::undo(self)
    }

    fn is_present(&self, _: &Backends) -> bool {
        FillInverse::is_present(self)
    }

    fn manual_steps(&self, _: &Backends) -> String {
        FillInverse::manual_steps(self)
    }
}

impl Change for IoStressInverse {
    /// Kills the workers first: their files close, and the directory is empty.
    fn undo(&self, _: &Backends) -> CapResult<()> {
        stress::undo(&self.workers)?;
        self.directory.undo()
    }

    fn is_present(&self, _: &Backends) -> bool {
        stress::is_present(&self.workers) || self.directory.is_present()
    }

    fn manual_steps(&self, _: &Backends) -> String {
        format!(
            "kill -KILL -- -{}; {}",
            self.workers.pgid,
            self.directory.manual_steps()
        )
    }
}

impl Host for Context {
    async fn space(&mut self, directory: String) -> GuestResult<DiskSpace> {
        self.blocking(move |c| c.disk_space(&directory)).await
    }

    async fn fill(&mut self, directory: String, bytes: u64) -> GuestResult<u64> {
        self.blocking(move |c| c.fill_directory(&directory, bytes))
            .await
    }

    async fn start_io_stress(&mut self, spec: IoStressSpec) -> GuestResult<u64> {
        self.blocking(move |c| c.start_io_stress_workers(spec))
            .await
    }
}
