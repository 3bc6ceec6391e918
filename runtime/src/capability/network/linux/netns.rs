//! Network namespaces: resolving, recognising again later, and running tools inside them.
//!
//! `setns` is per thread and a child process inherits the namespaces of the thread that spawned
//! it, so tools run from a short-lived thread that joined the namespace first; nothing else in
//! the process moves.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use super::Namespace;
use crate::capability::{CapError, CapResult};

/// A namespace as recorded in an undo record: the nsfs inode tells a recycled pid or a
/// recreated name from the namespace that was changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(super) enum NsId {
    /// The agent's own namespace.
    Host,
    /// The namespace of a process.
    Pid { pid: u32, dev: u64, ino: u64 },
    /// A named namespace under `/run/netns`.
    Named { name: String, dev: u64, ino: u64 },
}

/// An open handle on a namespace (none for the host's own).
pub(super) struct NetNs {
    id: NsId,
    file: Option<File>,
}

/// What a tool printed and whether it succeeded.
pub(super) struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl NetNs {
    /// Resolves a namespace as named by a caller.
    pub fn open(namespace: &Namespace) -> CapResult<NetNs> {
        match namespace {
            Namespace::Host => Ok(NetNs {
                id: NsId::Host,
                file: None,
            }),
            Namespace::Pid(pid) => {
                let (file, dev, ino) = open_ns(PathBuf::from(format!("/proc/{pid}/ns/net")))?;
                Ok(NetNs {
                    id: NsId::Pid {
                        pid: *pid,
                        dev,
                        ino,
                    },
                    file: Some(file),
                })
            }
            Namespace::Named(name) => {
                validate_name(name)?;
                let (file, dev, ino) = open_ns(PathBuf::from("/run/netns").join(name))?;
                Ok(NetNs {
                    id: NsId::Named {
                        name: name.clone(),
                        dev,
                        ino,
                    },
                    file: Some(file),
                })
            }
        }
    }

    /// Opens a recorded namespace again; `TargetGone` if it no longer exists or the pid or name
    /// now belongs to another namespace.
    pub fn reopen(id: &NsId) -> CapResult<NetNs> {
        let namespace = match id {
            NsId::Host => Namespace::Host,
            NsId::Pid { pid, .. } => Namespace::Pid(*pid),
            NsId::Named { name, .. } => Namespace::Named(name.clone()),
        };
        let ns = NetNs::open(&namespace)?;
        if ns.is(id) {
            Ok(ns)
        } else {
            Err(CapError::TargetGone(
                "the recorded network namespace no longer exists".to_string(),
            ))
        }
    }

    /// The identity to record.
    pub fn id(&self) -> NsId {
        self.id.clone()
    }

    /// Whether this is the recorded namespace.
    pub fn is(&self, id: &NsId) -> bool {
        self.id == *id
    }

    /// Whether this is the namespace of the calling thread, where the agent's own sockets are
    /// (the agent's threads never leave it; only the short-lived threads of [`NetNs::within`]
    /// do). When that cannot be told it answers yes: sparing the agent's endpoints where they
    /// are not costs a few unused rules, not sparing them where they are cuts the agent off.
    pub fn is_callers_own(&self) -> bool {
        let (NsId::Pid { dev, ino, .. } | NsId::Named { dev, ino, .. }) = &self.id else {
            return true;
        };
        std::fs::metadata("/proc/thread-self/ns/net")
            .map(|own| own.dev() == *dev && own.ino() == *ino)
            .unwrap_or(true)
    }

    /// Runs `f` on a thread that joined this namespace.
    pub fn within<R: Send>(&self, f: impl FnOnce() -> CapResult<R> + Send) -> CapResult<R> {
        let Some(file) = &self.file else {
            return f();
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                        CapError::Failed(format!("failed to enter the network namespace: {e}"))
                    })?;
                    f()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(CapError::Failed(
                        "thread in the network namespace panicked".to_string(),
                    ))
                })
        })
    }

    /// A duplicate handle, for a worker thread that joins the namespace itself.
    pub fn try_clone_file(&self) -> CapResult<Option<File>> {
        self.file
            .as_ref()
            .map(|f| {
                f.try_clone().map_err(|e| {
                    CapError::Failed(format!("failed to duplicate the namespace handle: {e}"))
                })
            })
            .transpose()
    }

    /// Runs a tool in the namespace; a non-zero exit is reported in the output, not as an error.
    pub fn try_run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> CapResult<Output> {
        self.within(|| {
            let mut child = Command::new(program)
                .args(args)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => CapError::Unsupported(format!(
                        "`{program}` is not installed; install {}",
                        package_of(program)
                    )),
                    _ => CapError::Failed(format!("failed to start `{program}`: {e}")),
                })?;
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(text.as_bytes()).map_err(|e| {
                    CapError::Failed(format!("failed to write to `{program}`: {e}"))
                })?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| CapError::Failed(format!("failed to wait for `{program}`: {e}")))?;
            Ok(Output {
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        })
    }

    /// Runs a tool in the namespace and returns its standard output; a non-zero exit is `Failed`.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> CapResult<String> {
        let out = self.try_run(program, args, stdin)?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(CapError::Failed(format!(
                "`{program} {}` failed: {}",
                args.join(" "),
                out.stderr
            )))
        }
    }

    /// `TargetGone` unless the interface exists in this namespace.
    pub fn check_interface(&self, interface: &str) -> CapResult<()> {
        let out = self.try_run("ip", &["-o", "link", "show", "dev", interface], None)?;
        if out.success {
            Ok(())
        } else {
            Err(CapError::TargetGone(format!(
                "no interface {interface} in the network namespace"
            )))
        }
    }
}

fn open_ns(path: PathBuf) -> CapResult<(File, u64, u64)> {
    let file = File::open(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => {
            CapError::TargetGone(format!("network namespace {} is gone", path.display()))
        }
        _ => CapError::Failed(format!("failed to open {}: {e}", path.display())),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| CapError::Failed(format!("failed to stat {}: {e}", path.display())))?;
    Ok((file, meta.dev(), meta.ino()))
}

fn validate_name(name: &str) -> CapResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(CapError::Invalid(format!(
            "network namespace name {name:?} is not valid"
        )))
    }
}

fn package_of(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        p if p.starts_with("ip6tables") || p.starts_with("iptables") => "iptables",
        _ => "iproute2",
    }
}
