//! Linux backend of the `process` capability: `/proc` and signals.

use super::super::{CapError, CapResult};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Read;

/// At most this much of `/proc/<pid>/cmdline` is read: a process controls its own arguments.
const CMDLINE_LIMIT: u64 = 64 << 10;
/// At most this much of `/proc/<pid>/{stat,status,cgroup}`.
pub(super) const SMALL_LIMIT: u64 = 16 << 10;

/// Reads at most `limit` bytes of a `/proc` file.
fn read_bounded(path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_bounded`] as text (lossy: names and paths may be any bytes).
pub(super) fn read_text(path: &str, limit: u64) -> std::io::Result<String> {
    read_bounded(path, limit).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id (or thread id, when asked for one).
    pub pid: u32,
    /// Thread group id: the process `pid` belongs to (`Tgid:` of `/proc/<pid>/status`); equal
    /// to `pid` for a process, the process's pid for one of its threads.
    pub tgid: u32,
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
    let stat = read_text(&format!("/proc/{pid}/stat"), SMALL_LIMIT).ok()?;
    // The name is in parentheses and may contain anything, so split at the last ')'.
    let close = stat.rfind(')')?;
    let open = stat.find('(')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    let cmdline = read_bounded(&format!("/proc/{pid}/cmdline"), CMDLINE_LIMIT)
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let status = read_text(&format!("/proc/{pid}/status"), SMALL_LIMIT).ok()?;
    let uid = status_field(&status, "Uid:").unwrap_or(u32::MAX);
    // Without it we could not tell a thread of the agent from a process: no guess, no target.
    let tgid = status_field(&status, "Tgid:")?;
    let cgroups = read_text(&format!("/proc/{pid}/cgroup"), SMALL_LIMIT)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    Some(ProcInfo {
        pid,
        tgid,
        ppid,
        name,
        cmdline,
        state,
        uid,
        start_time,
        cgroups,
    })
}

/// The first number of a `/proc/<pid>/status` line (`Uid:`, `Tgid:`).
fn status_field(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The thread group (process) that pid or thread id `id` belongs to, read now: threads come
/// and go, so this is asked at every call rather than remembered. `None` when `id` is gone.
pub fn tgid(id: u32) -> Option<u32> {
    let status = read_text(&format!("/proc/{id}/status"), SMALL_LIMIT).ok()?;
    status_field(&status, "Tgid:")
}

/// Every process (thread group leaders: `/proc` lists no other thread).
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

/// Why `p` is never in scope whatever the policy says, or `None`: it is one of `protected`
/// (pid 1, the agent, its ancestors: [`protected_pids`]) or a thread of one of them. A thread id
/// counts as its process because `kill(2)` on a thread id signals the whole thread group:
/// stopping one of the agent's threads stops the agent. `p.tgid` is read when `p` is, at call
/// time, since threads come and go.
pub fn never_in_scope(p: &ProcInfo, protected: &[u32]) -> Option<String> {
    let agent = std::process::id();
    let whose = |pid: u32| {
        if pid == 1 {
            "pid 1".to_string()
        } else if pid == agent {
            format!("the agent (pid {agent})")
        } else {
            format!("pid {pid}, an ancestor of the agent")
        }
    };
    if protected.contains(&p.pid) {
        return Some(if p.pid == 1 {
            "pid 1 is never in scope".to_string()
        } else {
            format!(
                "process {} is the agent or one of its ancestors, never in scope",
                p.pid
            )
        });
    }
    (p.tgid != p.pid && protected.contains(&p.tgid)).then(|| {
        format!(
            "process {} is a thread of {}, never in scope",
            p.pid,
            whose(p.tgid)
        )
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_of_a_protected_process_is_refused_as_such() {
        let me = std::process::id();
        let protected = protected_pids();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx
                .send(nix::unistd::gettid().as_raw().unsigned_abs())
                .unwrap();
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let p = info(tid).unwrap();
        assert_eq!((p.tgid, tgid(tid)), (me, Some(me)));
        assert_eq!(
            never_in_scope(&p, &protected).unwrap(),
            format!("process {tid} is a thread of the agent (pid {me}), never in scope")
        );
        stop_tx.send(()).unwrap();
        thread.join().unwrap();
        let of_init = ProcInfo {
            pid: 4_000_000,
            tgid: 1,
            ..p.clone()
        };
        assert_eq!(
            never_in_scope(&of_init, &[1, me]).unwrap(),
            "process 4000000 is a thread of pid 1, never in scope"
        );
        let other = ProcInfo {
            pid: 4_000_001,
            tgid: 4_000_001,
            ..p
        };
        assert_eq!(never_in_scope(&other, &[1, me]), None);
    }

    #[test]
    fn proc_reads_stop_at_their_bound() {
        assert_eq!(read_bounded("/dev/zero", 100).unwrap().len(), 100);
        let me = info(std::process::id()).unwrap();
        assert_eq!(me.tgid, me.pid);
        assert!(!me.cmdline.is_empty());
    }
}
