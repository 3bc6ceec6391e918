//! Running an allow-listed program on Linux: the checks on its file, a process group of its
//! own, capped streaming reads of its output and a timeout that kills the whole group.

use crate::capability::{CapError, CapResult};
use crate::contract::command::CommandOutput;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of stdout, and of stderr, kept.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// The whole environment a program gets: a search path of root's own directories, for scripts.
pub const PATH: &str = "/usr/bin:/bin";
/// How long output is still read after the program exited (and its group was killed): a
/// process that left the group (`setsid`) may hold the pipes open, and is not waited for.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Checks that `path` names a file the host may run: it exists, is not a symlink, is a regular
/// executable file owned by root or the agent's user and writable by nobody else, and every
/// directory above it (symlinks among them resolved) is likewise safe from other users, so
/// nobody but root can swap the program between this check and its start.
pub fn check_program(path: &str) -> CapResult<()> {
    let p = Path::new(path);
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CapError::Unsupported(format!(
                "program {path} does not exist on this host"
            )));
        }
        Err(e) => {
            return Err(CapError::Failed(format!(
                "cannot inspect program {path}: {e}"
            )));
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(p)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(CapError::Denied(format!(
            "program {path} is a symlink{target}: the allow-list must name the file itself"
        )));
    }
    if !meta.is_file() {
        return Err(CapError::Denied(format!(
            "program {path} is not a regular file"
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(CapError::Denied(format!(
            "program {path} is not executable (mode {:04o})",
            mode & 0o7777
        )));
    }
    safe_from_others(path, &meta)?;
    let parent = p.parent().unwrap_or(Path::new("/"));
    let dir = std::fs::canonicalize(parent)
        .map_err(|e| CapError::Failed(format!("cannot resolve the directory of {path}: {e}")))?;
    // The directories the path resolves through, and those it is written through: a symlink
    // on the way (`/srv/link/prog`) is only as safe as the directory holding it (`/srv`), whose
    // owner could point it elsewhere between this check and the exec.
    for d in dir.ancestors().chain(parent.ancestors()) {
        let m = std::fs::metadata(d)
            .map_err(|e| CapError::Failed(format!("cannot inspect {}: {e}", d.display())))?;
        let sticky = m.permissions().mode() & 0o1000 != 0;
        // A sticky directory (`/tmp`) lets others add files but not replace ours.
        if !sticky {
            safe_from_others(&format!("directory {} above {path}", d.display()), &m)?;
        } else if !owned_by_us(&m) {
            return Err(unsafe_owner(&format!("directory {}", d.display()), &m));
        }
    }
    Ok(())
}

fn owned_by_us(m: &std::fs::Metadata) -> bool {
    m.uid() == 0 || m.uid() == nix::unistd::geteuid().as_raw()
}

fn unsafe_owner(what: &str, m: &std::fs::Metadata) -> CapError {
    CapError::Denied(format!(
        "{what} belongs to uid {}: only root or the agent's user may own what the agent runs",
        m.uid()
    ))
}

/// Refuses a file or directory another user could change.
fn safe_from_others(what: &str, m: &std::fs::Metadata) -> CapResult<()> {
    if !owned_by_us(m) {
        return Err(unsafe_owner(what, m));
    }
    let mode = m.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(CapError::Denied(format!(
            "{what} is writable by other users (mode {:04o})",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// A program's process group: killed with SIGKILL when dropped (the call was cut off) unless
/// already killed.
struct Group {
    pgid: Option<Pid>,
}

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH: the group is already empty, which is what we want.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One stream's capture: the first [`OUTPUT_CAP`] bytes; the rest is read and dropped, so a
/// chatty program never blocks on a full pipe and never costs the host more than the cap.
struct Capture {
    kept: Vec<u8>,
    truncated: bool,
    open: bool,
}

impl Capture {
    fn new() -> Capture {
        Capture {
            kept: Vec::new(),
            truncated: false,
            open: true,
        }
    }

    fn take(&mut self, read: std::io::Result<usize>, chunk: &[u8]) {
        match read {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => {
                let room = OUTPUT_CAP - self.kept.len();
                let n = n.min(chunk.len());
                if n > room {
                    self.truncated = true;
                }
                self.kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

async fn read_some(
    r: &mut Option<impl AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => Ok(0),
    }
}

/// Runs `program` with `args` for at most `timeout` (already checked against the policy and
/// the call's deadline): no shell, environment `PATH` only, stdin null, cwd `/`.
pub async fn run(program: &str, args: &[String], timeout: Duration) -> CapResult<CommandOutput> {
    let path = program.to_string();
    tokio::task::spawn_blocking(move || check_program(&path))
        .await
        .map_err(|e| CapError::Failed(format!("checking {program} failed: {e}")))??;
    let mut cmd = tokio::process::Command::new(PathBuf::from(program));
    cmd.args(args)
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| CapError::Failed(format!("cannot start {program}: {e}")))?;
    let mut group = Group {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Capture::new(), Capture::new());
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let deadline = tokio::time::Instant::from_std(start + timeout);
    let mut status: Option<std::process::ExitStatus> = None;
    let mut timed_out = false;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if status.is_some() && !out.open && !err.open {
            break;
        }
        let wake = drain_until.unwrap_or(deadline);
        tokio::select! {
            r = read_some(&mut stdout, &mut out_buf), if out.open => out.take(r, &out_buf),
            r = read_some(&mut stderr, &mut err_buf), if err.open => err.take(r, &err_buf),
            s = child.wait(), if status.is_none() => {
                let s = s.map_err(|e| CapError::Failed(format!("waiting for {program}: {e}")))?;
                status = Some(s);
                // The leader is gone: whatever it left running in its group goes too. (Its
                // pid cannot be reused as a group id while any member of the group lives.)
                group.kill();
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = tokio::time::sleep_until(wake) => {
                if status.is_some() {
                    // Someone outside the group holds the pipes: stop reading.
                    break;
                }
                timed_out = true;
                group.kill();
                let s = child
                    .wait()
                    .await
                    .map_err(|e| CapError::Failed(format!("waiting for {program}: {e}")))?;
                status = Some(s);
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(CommandOutput {
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        truncated: out.truncated || err.truncated,
        stdout: out.kept,
        stderr: err.kept,
        elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_cap_and_notes_the_rest() {
        let mut c = Capture::new();
        let chunk = vec![7u8; 8192];
        for _ in 0..9 {
            c.take(Ok(8192), &chunk);
        }
        assert_eq!(c.kept.len(), OUTPUT_CAP);
        assert!(c.truncated && c.open);
        c.take(Ok(0), &chunk);
        assert!(!c.open);
    }

    #[test]
    fn programs_that_are_not_plain_safe_files_are_refused() {
        let e = check_program("/nonexistent/faultline-probe").unwrap_err();
        assert!(matches!(e, CapError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = check_program("/").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
