//! Linux backend of the `process` capability: `/proc` and signals.

use super::super::{CapError, CapResult};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// `/proc/<pid>/comm`.
    pub name: String,
    /// Arguments.
    pub cmdline: Vec<String>,
    /// One-letter state.
    pub state: char,
    /// Real user id.
    pub uid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Cgroup paths, one per hierarchy line of `/proc/<pid>/cgroup`.
    pub cgroups: Vec<String>,
}

/// Reads one process; `None` when it is gone (or a kernel thread without a command line is
/// fine too: it is returned with an empty one).
pub fn info(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may contain anything, so split at the last ')'.
    let close = stat.rfind(')')?;
    let open = stat.find('(')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    Some(ProcInfo {
        pid,
        ppid,
        name,
        cmdline,
        state,
        uid,
        start_time,
        cgroups,
    })
}

/// Every process.
pub fn list() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut all: Vec<ProcInfo> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(info)
        .collect();
    all.sort_by_key(|p| p.pid);
    all
}

/// Pid 1, this process and its ancestors: never in scope.
pub fn protected_pids() -> Vec<u32> {
    let mut pids = vec![1, std::process::id()];
    let mut pid = std::process::id();
    while let Some(p) = info(pid) {
        if p.ppid == 0 || pids.contains(&p.ppid) && p.ppid != pid {
            if p.ppid != 0 && !pids.contains(&p.ppid) {
                pids.push(p.ppid);
            }
            break;
        }
        pids.push(p.ppid);
        pid = p.ppid;
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Sends `signal` to `pid` if it is still the process that started at `start_time`.
pub fn signal(pid: u32, start_time: Option<u64>, signal: Signal) -> CapResult<()> {
    if let Some(start) = start_time {
        match info(pid) {
            Some(p) if p.start_time == start => {}
            _ => return Err(CapError::TargetGone(format!("process {pid} is gone"))),
        }
    }
    let raw = i32::try_from(pid).map_err(|_| CapError::Invalid(format!("pid {pid}")))?;
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) => {
            settle(pid, signal);
            Ok(())
        }
        Err(nix::errno::Errno::ESRCH) => {
            Err(CapError::TargetGone(format!("process {pid} is gone")))
        }
        Err(e) => Err(CapError::Failed(format!("kill({pid}, {signal}): {e}"))),
    }
}

/// Stop and continue are delivered asynchronously: wait (briefly) until `/proc` shows the new
/// state, so a caller that reports "paused" is telling the truth.
fn settle(pid: u32, signal: Signal) {
    let done = |state: char| match signal {
        Signal::SIGSTOP => state == 'T' || state == 't',
        Signal::SIGCONT => state != 'T',
        _ => true,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        match info(pid) {
            Some(p) if !done(p.state) => std::thread::sleep(std::time::Duration::from_millis(2)),
            _ => return,
        }
    }
    tracing::warn!("process {pid} did not settle after {signal} within 2 s");
}
