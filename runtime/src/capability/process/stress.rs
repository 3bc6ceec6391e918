//! The agent's own load workers (`start-stress`): never arbitrary commands, always copies of the
//! agent's executable running [`run_worker`], in one process group, optionally placed in a
//! target cgroup, killed as a group on undo.
//!
//! Start-up is gated so no load escapes its cgroup: each worker waits for a `g` byte on stdin,
//! sent only after its pid is in the target cgroup (and, for [`spawn_gated`], after the caller
//! journalled the workers). A worker whose stdin closes first exits.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::capability::cgroup::linux::CgroupBackend;
use crate::capability::{CapError, CapResult};

/// Most workers one call may start.
pub const MAX_WORKERS: u32 = 64;

/// Length of one cpu worker's busy/sleep cycle.
const SLICE: Duration = Duration::from_millis(100);

/// How long undo waits for killed workers to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Kinds of load a worker makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum StressKind {
    /// Burns a share of one core.
    Cpu,
    /// Allocates, touches and holds memory.
    Memory,
    /// Writes and fsyncs a temporary file in a loop.
    Io,
    /// Writes (and fsyncs) and/or reads back, with its cached pages dropped, the file the
    /// agent opened for it as its standard output: the worker never names a path.
    File,
}

/// A set of load workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StressSpec {
    /// The kind of load.
    pub kind: StressKind,
    /// Number of worker processes, 1 to [`MAX_WORKERS`].
    pub workers: u32,
    /// cpu: percent of one core each worker burns (1–100).
    pub load_percent: u8,
    /// memory: bytes each worker allocates and touches.
    pub memory_bytes: u64,
    /// Cgroup (relative to the hierarchy root) to place the workers in; None for the agent's own.
    pub cgroup: Option<String>,
}

/// One worker, named so that a reused pid is never mistaken for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WorkerId {
    /// Its pid.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22, clock ticks since boot).
    pub start_time: u64,
}

/// What undoing a `start-stress` needs: the process group and each worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StressInverse {
    /// The process group, whose id is the first worker's pid.
    pub pgid: i32,
    /// Start time of the group's leader (the first worker).
    pub leader_start_time: u64,
    /// Every worker, leader included. Workers never fork, so this is the whole group.
    pub workers: Vec<WorkerId>,
}

/// Spawns `spec.workers` processes of `worker_exe stress-worker --kind … --load … --memory-bytes
/// …` in a new process group, moves each into `spec.cgroup` (every hierarchy that has it; scope
/// checked as [`CgroupBackend::attach`]) before it starts burning, and returns the inverse. On
/// any failure the workers already started are killed.
pub fn spawn(
    spec: &StressSpec,
    worker_exe: &Path,
    backend: &CgroupBackend,
    allowed: &[impl AsRef<str>],
) -> CapResult<StressInverse> {
    let gated = spawn_gated(spec, worker_exe, backend, allowed, |_, _| Ok(()))?;
    let inverse = gated.inverse.clone();
    gated.release()?;
    Ok(inverse)
}

/// Workers started and placed but still waiting for their start signal: the caller journals
/// [`Gated::inverse`], then [`Gated::release`]s them. Dropped unreleased, they are killed.
pub struct Gated {
    children: Vec<Child>,
    /// What undoing them needs.
    pub inverse: StressInverse,
}

impl Gated {
    /// Lets every worker start; on failure kills them all.
    pub fn release(mut self) -> CapResult<()> {
        for child in &mut self.children {
            let go = child
                .stdin
                .take()
                .map(|mut stdin| stdin.write_all(b"g"))
                .unwrap_or_else(|| Err(std::io::Error::other("no stdin pipe")));
            if let Err(e) = go {
                let _ = undo(&self.inverse);
                return Err(CapError::Failed(format!(
                    "failed to start stress worker {}: {e}",
                    child.id()
                )));
            }
        }
        // Released: the children now belong to the journal's inverse, not to this value.
        self.children.clear();
        Ok(())
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        abort(&mut self.children);
    }
}

/// As [`spawn`], but leaves the workers waiting for [`Gated::release`]. `configure` adds to
/// worker `i`'s command (arguments, its standard output) before it is spawned.
pub fn spawn_gated(
    spec: &StressSpec,
    worker_exe: &Path,
    backend: &CgroupBackend,
    allowed: &[impl AsRef<str>],
    configure: impl FnMut(usize, &mut Command) -> CapResult<()>,
) -> CapResult<Gated> {
    validate(spec)?;
    if let Some(cgroup) = &spec.cgroup {
        // Scope first: a denied cgroup starts no process at all.
        backend.attach(cgroup, &[], allowed)?;
    }
    let mut children: Vec<Child> = Vec::new();
    match start(spec, worker_exe, backend, allowed, &mut children, configure) {
        Ok(inverse) => Ok(Gated { children, inverse }),
        Err(e) => {
            abort(&mut children);
            Err(e)
        }
    }
}

/// Starts the workers, gated, and places them; `children` gets each one as soon as it exists.
fn start(
    spec: &StressSpec,
    worker_exe: &Path,
    backend: &CgroupBackend,
    allowed: &[impl AsRef<str>],
    children: &mut Vec<Child>,
    mut configure: impl FnMut(usize, &mut Command) -> CapResult<()>,
) -> CapResult<StressInverse> {
    let kind = match spec.kind {
        StressKind::Cpu => "cpu",
        StressKind::Memory => "memory",
        StressKind::Io => "io",
        StressKind::File => "file",
    };
    let mut pgid = 0;
    let mut workers = Vec::new();
    for i in 0..spec.workers as usize {
        let mut command = Command::new(worker_exe);
        command
            .args(["stress-worker", "--kind", kind])
            .args(["--load", &spec.load_percent.to_string()])
            .args(["--memory-bytes", &spec.memory_bytes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(pgid);
        configure(i, &mut command)?;
        let child = command.spawn().map_err(|e| {
            CapError::Failed(format!(
                "failed to start stress worker {}: {e}",
                worker_exe.display()
            ))
        })?;
        let pid = i32::try_from(child.id())
            .map_err(|_| CapError::Failed(format!("pid {} out of range", child.id())))?;
        children.push(child);
        if pgid == 0 {
            pgid = pid;
        }
        let start_time = start_time(pid).ok_or_else(|| {
            CapError::Failed(format!("stress worker {pid} exited before it started"))
        })?;
        workers.push(WorkerId { pid, start_time });
        if let Some(cgroup) = &spec.cgroup {
            backend.attach(cgroup, &[pid.unsigned_abs()], allowed)?;
        }
    }
    let leader_start_time = workers.first().map(|w| w.start_time).unwrap_or_default();
    Ok(StressInverse {
        pgid,
        leader_start_time,
        workers,
    })
}

/// Kills and reaps workers that never got their start signal.
fn abort(children: &mut [Child]) {
    for child in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Kills the group (SIGKILL to `-pgid`, only while its leader is the process that was started:
/// pids are reused) and each worker whose start time still matches, reaps the agent's own
/// children, and waits until none is left running. Idempotent; workers already gone are Ok.
pub fn undo(inv: &StressInverse) -> CapResult<()> {
    if inv.pgid > 0 && start_time(inv.pgid) == Some(inv.leader_start_time) {
        match killpg(Pid::from_raw(inv.pgid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                return Err(CapError::Failed(format!(
                    "failed to kill stress process group {}: {e}",
                    inv.pgid
                )));
            }
        }
    }
    // The leader may have died (an OOM kill) while the rest of the group lives on.
    for w in &inv.workers {
        if start_time(w.pid) == Some(w.start_time) {
            match kill(Pid::from_raw(w.pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    return Err(CapError::Failed(format!(
                        "failed to kill stress worker {}: {e}",
                        w.pid
                    )));
                }
            }
        }
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        reap(inv);
        let running: Vec<i32> = inv
            .workers
            .iter()
            .filter(|w| running(w))
            .map(|w| w.pid)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CapError::Failed(format!(
                "stress workers {running:?} survived SIGKILL for {KILL_TIMEOUT:?} (a frozen v1 cgroup \
                 holds killed tasks until thawed); kill them by hand: kill -9 {}",
                running
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether any worker still runs.
pub fn is_present(inv: &StressInverse) -> bool {
    inv.workers.iter().any(running)
}

/// Reaps the workers that are the agent's own children; others (after an agent restart) belong
/// to init, which reaps them.
fn reap(inv: &StressInverse) {
    for w in &inv.workers {
        if start_time(w.pid) != Some(w.start_time) {
            continue;
        }
        // ECHILD: not ours; StillAlive: not dead yet.
        let _ = waitpid(Pid::from_raw(w.pid), Some(WaitPidFlag::WNOHANG));
    }
    loop {
        match waitpid(Pid::from_raw(-inv.pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
}

/// Whether `w` is still a live process (a zombie awaiting its parent's wait no longer runs).
fn running(w: &WorkerId) -> bool {
    proc_stat(w.pid)
        .is_some_and(|(state, start)| start == w.start_time && state != 'Z' && state != 'X')
}

/// A process's start time, None when there is no such process.
fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// State letter and start time from `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat =
        super::linux::read_text(&format!("/proc/{pid}/stat"), super::linux::SMALL_LIMIT).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall; the state is field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn validate(spec: &StressSpec) -> CapResult<()> {
    if spec.workers == 0 || spec.workers > MAX_WORKERS {
        return Err(CapError::Invalid(format!(
            "workers must be 1 to {MAX_WORKERS}, not {}",
            spec.workers
        )));
    }
    match spec.kind {
        StressKind::Cpu if !(1..=100).contains(&spec.load_percent) => Err(CapError::Invalid(
            format!("load-percent must be 1 to 100, not {}", spec.load_percent),
        )),
        StressKind::Memory if spec.memory_bytes == 0 => Err(CapError::Invalid(
            "memory-bytes must be at least 1".to_string(),
        )),
        _ => Ok(()),
    }
}

/// Arguments of the hidden `stress-worker` subcommand.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// The kind of load.
    #[arg(long, value_enum)]
    pub kind: StressKind,
    /// cpu: percent of one core to burn.
    #[arg(long, default_value_t = 100)]
    pub load: u8,
    /// memory: bytes to allocate, touch and hold.
    #[arg(long, default_value_t = 0)]
    pub memory_bytes: u64,
    /// file: size of the file (standard output) to write and read.
    #[arg(long, default_value_t = 0)]
    pub file_bytes: u64,
    /// file: write and fsync the file over and over.
    #[arg(long)]
    pub write: bool,
    /// file: read the file back over and over, its cached pages dropped first.
    #[arg(long)]
    pub read: bool,
}

/// The worker's main loop: waits for the `g` byte on stdin (EOF first: exits), then cpu burns
/// `load` percent of one core (busy/sleep in 100 ms slices), memory allocates and touches
/// `memory_bytes` and holds it, io writes and fsyncs an unlinked temporary file in a loop, file
/// writes and/or reads its standard output. Exits when its parent (the agent) dies.
pub fn run_worker(args: &WorkerArgs) -> anyhow::Result<()> {
    // Parent death is noticed by polling getppid() rather than PR_SET_PDEATHSIG, which fires
    // when the spawning *thread* exits: the agent spawns from short-lived runtime threads.
    let parent = std::os::unix::process::parent_id();
    let alive = || std::os::unix::process::parent_id() == parent;
    let mut go = [0u8; 1];
    match std::io::stdin().read(&mut go) {
        Ok(1) if go[0] == b'g' => {}
        _ => return Ok(()),
    }
    match args.kind {
        StressKind::Cpu => burn(args.load.clamp(1, 100), alive),
        StressKind::Memory => hold(args.memory_bytes, alive),
        StressKind::Io => churn(alive),
        StressKind::File => file_load(args, alive),
    }
}

/// Writes `file_bytes` to the file on standard output and fsyncs it, and/or reads it back with
/// its cached pages dropped (so reads reach the device), until the agent dies. A read-only
/// worker writes the file once first, so there is something to read.
fn file_load(args: &WorkerArgs, alive: impl Fn() -> bool) -> anyhow::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let file = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("standard output is not a file")?,
    );
    let len = args.file_bytes.max(1);
    let chunk = vec![0xa5u8; CHUNK as usize];
    let mut buf = vec![0u8; CHUNK as usize];
    let write_all = || -> anyhow::Result<()> {
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK) as usize;
            file.write_all_at(&chunk[..n], at)
                .context("failed to write the file")?;
            at += n as u64;
        }
        file.sync_data().context("failed to fsync the file")
    };
    if !args.write {
        write_all()?;
    }
    while alive() {
        if args.write {
            write_all()?;
        }
        if args.read {
            // Clean pages (fsynced) are dropped: the next read goes to the device.
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
                .context("failed to drop the file's cached pages")?;
            let mut at = 0;
            while at < len && alive() {
                let n = (len - at).min(CHUNK) as usize;
                file.read_exact_at(&mut buf[..n], at)
                    .context("failed to read the file")?;
                at += n as u64;
            }
        }
        if !args.write && !args.read {
            std::thread::sleep(SLICE);
        }
    }
    Ok(())
}

fn burn(load: u8, alive: impl Fn() -> bool) -> anyhow::Result<()> {
    let busy = SLICE * u32::from(load) / 100;
    // Busy time is counted on this thread's CPU clock, not the wall clock, so a worker that the
    // scheduler preempts still burns its share (within the slice) on a loaded host.
    let cpu = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(Duration::from)
            .ok()
    };
    let mut x: u64 = 1;
    while alive() {
        let (wall, used) = (Instant::now(), cpu());
        loop {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            let burnt = match (used, cpu()) {
                (Some(start), Some(now)) => now.saturating_sub(start),
                _ => wall.elapsed(),
            };
            if burnt >= busy || wall.elapsed() >= SLICE {
                break;
            }
        }
        if let Some(rest) = SLICE.checked_sub(wall.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(())
}

fn hold(bytes: u64, alive: impl Fn() -> bool) -> anyhow::Result<()> {
    let len = usize::try_from(bytes).context("memory-bytes does not fit this platform")?;
    let mut block: Vec<u8> = Vec::new();
    block
        .try_reserve_exact(len)
        .with_context(|| format!("failed to allocate {bytes} bytes"))?;
    // Non-zero bytes: every page is written, so every page is resident and charged.
    block.resize(len, 0xa5);
    while alive() {
        std::thread::sleep(SLICE);
    }
    std::hint::black_box(&block);
    Ok(())
}

fn churn(alive: impl Fn() -> bool) -> anyhow::Result<()> {
    const CHUNK: usize = 1 << 20;
    const MAX_FILE: u64 = 64 << 20;
    // Unlinked from the start (O_TMPFILE or create-and-unlink): nothing is left behind even
    // after SIGKILL.
    let mut file = tempfile::tempfile().context("failed to create a temporary file")?;
    let chunk = vec![0x5au8; CHUNK];
    let mut written = 0u64;
    while alive() {
        file.write_all(&chunk)
            .context("failed to write the temporary file")?;
        file.sync_data()
            .context("failed to fsync the temporary file")?;
        written += CHUNK as u64;
        if written >= MAX_FILE {
            file.set_len(0)
                .context("failed to truncate the temporary file")?;
            file.rewind()
                .context("failed to rewind the temporary file")?;
            written = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(0), None);
    }

    #[test]
    fn specs_are_validated() {
        let spec = StressSpec {
            kind: StressKind::Cpu,
            workers: 1,
            load_percent: 50,
            memory_bytes: 0,
            cgroup: None,
        };
        assert!(validate(&spec).is_ok());
        assert!(
            validate(&StressSpec {
                workers: 0,
                ..spec.clone()
            })
            .is_err()
        );
        assert!(
            validate(&StressSpec {
                load_percent: 101,
                ..spec.clone()
            })
            .is_err()
        );
        assert!(
            validate(&StressSpec {
                kind: StressKind::Memory,
                ..spec
            })
            .is_err()
        );
    }
}
