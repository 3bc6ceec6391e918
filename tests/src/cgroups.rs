//! Throwaway cgroups for the cgroup tests: created in each needed v1 controller's hierarchy and
//! in v2, each holding a `sleep` child, and removed on drop even when the test panics.
//!
//! The harness finds the hierarchies itself (from `/proc/self/mountinfo`) rather than through
//! the backend under test, so the tests check the backend against an independent reading.

// Test support: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every cgroup the harness creates; the creating process's pid follows.
pub const PREFIX: &str = "faultline-test-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The mount point of the v1 hierarchy that holds `controller`, if one is mounted.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(fstype, _, opts)| fstype == "cgroup" && opts.split(',').any(|o| o == controller))
        .map(|(_, mount, _)| mount)
}

/// The mount point of the v2 hierarchy, if one is mounted.
pub fn v2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(fstype, _, _)| fstype == "cgroup2")
        .map(|(_, mount, _)| mount)
}

/// (fstype, mount point, super options) of each cgroup mount.
fn mounts() -> Vec<(String, PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let opts = right.nth(1)?;
            Some((fstype.to_string(), PathBuf::from(mount), opts.to_string()))
        })
        .filter(|(fstype, _, _)| fstype.starts_with("cgroup"))
        .collect()
}

/// Reads a file, panicking with its path on failure.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Writes a file, panicking with its path on failure.
pub fn write(path: impl AsRef<Path>, value: &str) {
    let path = path.as_ref();
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

/// Nanoseconds `pid` has spent on a CPU (`/proc/PID/schedstat`, first field).
pub fn cpu_ns(pid: i32) -> u64 {
    read(format!("/proc/{pid}/schedstat"))
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// A throwaway cgroup, `/faultline-test-<pid>-<n>`, in several hierarchies at once.
pub struct TestCgroup {
    path: String,
    /// (hierarchy root, cgroup directory), in creation order.
    dirs: Vec<(PathBuf, PathBuf)>,
    v1: Vec<(String, PathBuf)>,
    v2: Option<PathBuf>,
    child: Option<Child>,
}

impl TestCgroup {
    /// Creates the cgroup in the v1 hierarchy of each of `controllers` that is mounted on v1 and,
    /// when `unified`, in v2; starts `sleep 60` and moves it in.
    pub fn new(controllers: &[&str], unified: bool) -> Self {
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}", std::process::id());
        let mut cg = TestCgroup {
            path: format!("/{name}"),
            dirs: Vec::new(),
            v1: Vec::new(),
            v2: None,
            child: None,
        };
        for controller in controllers {
            let Some(root) = v1_mount(controller) else {
                continue;
            };
            let dir = root.join(&name);
            if !cg.dirs.iter().any(|(_, d)| *d == dir) {
                mkdir(&dir);
                cg.dirs.push((root, dir.clone()));
            }
            cg.v1.push((controller.to_string(), dir));
        }
        if unified && let Some(root) = v2_mount() {
            let dir = root.join(&name);
            mkdir(&dir);
            cg.dirs.push((root, dir.clone()));
            cg.v2 = Some(dir);
        }
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        cg.child = Some(child);
        cg.adopt(pid);
        cg
    }

    /// The cgroup's path relative to each hierarchy root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The pid of the `sleep` child inside.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// The cgroup's directory in `controller`'s v1 hierarchy.
    pub fn v1(&self, controller: &str) -> &Path {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
            .unwrap_or_else(|| panic!("no v1 {controller} cgroup in this test"))
    }

    /// The cgroup's directory in v2.
    pub fn v2(&self) -> &Path {
        self.v2.as_deref().expect("no v2 cgroup in this test")
    }

    /// The cgroup's directory in every hierarchy it was created in.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, dir)| dir.clone()).collect()
    }

    /// Moves `pid` into the cgroup in every hierarchy it was created in.
    pub fn adopt(&self, pid: u32) {
        for (_, dir) in &self.dirs {
            write(dir.join("cgroup.procs"), &pid.to_string());
        }
    }

    /// The contents of every limit and freeze file the cgroup faults write, in every hierarchy
    /// the cgroup was created in, for before/after comparison.
    pub fn limits(&self) -> Vec<(PathBuf, String)> {
        const FILES: &[&str] = &[
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.max",
            "memory.limit_in_bytes",
            "memory.max",
            "pids.max",
            "freezer.state",
            "cgroup.freeze",
        ];
        self.dirs
            .iter()
            .flat_map(|(_, dir)| FILES.iter().map(move |f| dir.join(f)))
            .filter(|file| file.exists())
            .map(|file| {
                let text = read(&file);
                (file, text)
            })
            .collect()
    }

    /// Pids in the cgroup (its `cgroup.procs` in the first hierarchy it was created in).
    pub fn procs(&self) -> Vec<u32> {
        self.dirs
            .first()
            .map(|(_, dir)| read(dir.join("cgroup.procs")))
            .unwrap_or_default()
            .lines()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Creates `name` below this cgroup in every hierarchy; returns its path.
    pub fn sub(&mut self, name: &str) -> String {
        let mut created = Vec::new();
        for (root, dir) in &self.dirs {
            let sub = dir.join(name);
            mkdir(&sub);
            created.push((root.clone(), sub));
        }
        self.dirs.extend(created);
        format!("{}/{name}", self.path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Thaw first: a task frozen by v1 cannot die, and waiting for it would hang.
        for (_, dir) in &self.dirs {
            thaw(dir);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (root, dir) in self.dirs.iter().rev() {
            remove(root, dir);
        }
    }
}

fn thaw(dir: &Path) {
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
}

fn mkdir(dir: &Path) {
    std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
}

/// Thaws `dir`, kills whatever it still holds (every task in a test cgroup is the test's: a
/// worker left by a failed assertion, a shell), and removes it.
fn remove(root: &Path, dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(root, &entry.path());
            }
        }
    }
    thaw(dir);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|p| p.parse().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = std::fs::write(root.join("cgroup.procs"), pid.to_string());
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("could not remove test cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Removes test cgroups left by test processes that no longer run (killed mid-test).
fn remove_stale() {
    let roots = mounts().into_iter().map(|(_, mount, _)| mount);
    for root in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                remove(&root, &entry.path());
            }
        }
    }
}
