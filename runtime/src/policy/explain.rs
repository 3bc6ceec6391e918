//! What a policy reaches on this host right now: for each grant, the components it applies to,
//! its capabilities and operations, and the live processes, cgroups, network namespaces and
//! interfaces its scopes match, and the space a fill could take in its directories.
//! `faultline policy explain` prints it; nothing here changes the system (it reads `/proc`, the
//! cgroup mounts, `/run/netns`, each namespace's interface list, `statvfs` of the granted
//! directories and the metadata of each allow-listed program).
//!
//! The same matchers as the capabilities' scope checks are used ([`ProcessScope::matches`],
//! [`crate::capability::process::linux::never_in_scope`]), so what is shown is what a call would
//! be allowed.

use super::{Capability, Grant, Policy, ProcessScope, SignalName, StressKind};
use crate::capability::cgroup::linux::CgroupBackend;
use crate::capability::network::linux::{Namespace, interface_names};
use crate::capability::process::linux::{self as proc, ProcInfo};
use crate::policy::Criterion;
use serde::Serialize;
use std::collections::HashMap;

/// At most this many cgroups are listed per subtree (the total is always given).
const CGROUP_LIMIT: usize = 50;

/// What the policy reaches on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The process whose view this is: the agent (the `faultline` process that runs faults).
    pub agent: u32,
    /// Processes no grant can reach: pid 1, the agent and its ancestors (and their threads).
    pub never_in_scope: Vec<Excluded>,
    /// One entry per grant, in file order.
    pub grants: Vec<GrantReach>,
}

/// A process a scope names but can never touch.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Process id.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// Why.
    pub why: String,
}

/// What one grant reaches.
#[derive(Debug, Clone, Serialize)]
pub struct GrantReach {
    /// Its number, in file order from 1.
    pub number: usize,
    /// The `component` field as written.
    pub component: String,
    /// Which components that is, in words.
    pub applies_to: String,
    /// Capability interfaces granted (log and rollback are granted to everyone anyway).
    pub capabilities: Vec<Capability>,
    /// Signals that may be sent to its processes.
    pub signals: Vec<SignalName>,
    /// Stress worker kinds that may be started.
    pub stress: Vec<StressKind>,
    /// The processes its process scope covers now; `None` when the scope lists nothing.
    pub processes: Option<ProcessReach>,
    /// Its cgroup subtrees and the cgroups in them now.
    pub cgroups: Vec<SubtreeReach>,
    /// Its network scope; `None` when it lists no namespace.
    pub network: Option<NetworkReach>,
    /// Where a probe may connect, in words; `None` when the grant lists no destination.
    pub outbound: Option<String>,
    /// Programs a probe may run, and whether the host would run each now.
    pub commands: Vec<ProgramReach>,
    /// Its filesystem directories; `None` when it lists none.
    pub filesystem: Option<FilesystemReach>,
}

/// What a filesystem scope reaches.
#[derive(Debug, Clone, Serialize)]
pub struct FilesystemReach {
    /// The reserve a fill must leave (`10%`, `1.0 GiB`).
    pub reserve: String,
    /// Each granted directory and its file system now.
    pub directories: Vec<DirectoryReach>,
}

/// A granted directory and the space on its file system now.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryReach {
    /// The directory.
    pub directory: String,
    /// Size of its file system.
    pub total_bytes: u64,
    /// Available there now.
    pub available_bytes: u64,
    /// This grant's reserve there, in bytes.
    pub reserve_bytes: u64,
    /// The most one fill may take now (available less the reserve).
    pub fillable_bytes: u64,
    /// Why it could not be read, if it could not (gone, swapped for a symlink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An allow-listed program and whether it can be run now.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramReach {
    /// The rule as written (`"/usr/bin/pg_isready"` or `{ path = …, args = […] }`).
    pub rule: String,
    /// Why the host would refuse to run it now (missing, a symlink, writable by others…);
    /// `None` when it would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
}

/// The live processes a process scope covers.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReach {
    /// Processes in scope now.
    pub matched: Vec<ProcessMatch>,
    /// Processes the scope names that are never in scope.
    pub excluded: Vec<ProcessMatch>,
}

/// A process a scope covers, and the criterion that put it there.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMatch {
    /// Process id.
    pub pid: u32,
    /// Its name (`/proc/<pid>/comm`).
    pub name: String,
    /// Its user (name, or the uid when it has none).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
    /// The first criterion that matched.
    pub matched_by: Criterion,
    /// Why it is never in scope, for an excluded process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A cgroup subtree and what is in it now.
#[derive(Debug, Clone, Serialize)]
pub struct SubtreeReach {
    /// The subtree.
    pub subtree: String,
    /// Cgroups at or below it, per hierarchy (`version`), at most 50 (`total` counts them all).
    pub cgroups: Vec<CgroupEntry>,
    /// How many there are in all (0: the subtree does not exist now).
    pub total: usize,
    /// Why the cgroups could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One cgroup.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupEntry {
    /// Path relative to the hierarchy root.
    pub path: String,
    /// 1 or 2.
    pub version: u8,
    /// v1: the hierarchy's controllers.
    pub controllers: Vec<String>,
}

/// What a network scope reaches.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkReach {
    /// Namespaces that exist now and match, with their matching interfaces.
    pub namespaces: Vec<NamespaceReach>,
    /// Whether `pid` is granted: the namespace of any process in the component's process scope.
    pub pid_namespaces: bool,
    /// Interface globs as written.
    pub interface_globs: Vec<String>,
    /// Granted destination networks; `None`: any destination.
    pub destinations: Option<Vec<String>>,
    /// Granted port ranges; `None`: any port.
    pub ports: Option<Vec<String>>,
}

/// A namespace and the interfaces in it a grant matches.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReach {
    /// `host` or `named:<name>`.
    pub namespace: String,
    /// Interfaces there whose name matches a glob.
    pub interfaces: Vec<String>,
    /// Why its interfaces could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Looks at the host through `policy`. Reads only.
pub fn explain(policy: &Policy) -> Explanation {
    let protected = proc::protected_pids();
    let processes = proc::list();
    let mut users = Users::default();
    let never_in_scope = protected
        .iter()
        .filter_map(|pid| {
            let p = processes.iter().find(|p| p.pid == *pid)?;
            Some(Excluded {
                pid: p.pid,
                name: p.name.clone(),
                why: proc::never_in_scope(p, &protected)?,
            })
        })
        .collect();
    let cgroups = CgroupBackend::new();
    let named = named_namespaces();
    let grants = policy
        .grants
        .iter()
        .map(|g| GrantReach {
            number: g.number,
            component: g.component.clone(),
            applies_to: g.matcher.describe(),
            capabilities: g.capabilities.clone(),
            signals: g.process.signals.clone(),
            stress: g.process.stress.clone(),
            processes: (!g.process.is_empty())
                .then(|| process_reach(&g.process, &processes, &protected, &mut users)),
            cgroups: g
                .cgroup
                .iter()
                .map(|s| match &cgroups {
                    Ok(backend) => {
                        let (found, total) = backend.subtree(s.as_str(), CGROUP_LIMIT);
                        SubtreeReach {
                            subtree: s.to_string(),
                            cgroups: found
                                .into_iter()
                                .map(|c| CgroupEntry {
                                    path: c.path,
                                    version: c.version,
                                    controllers: c.controllers,
                                })
                                .collect(),
                            total,
                            error: None,
                        }
                    }
                    Err(e) => SubtreeReach {
                        subtree: s.to_string(),
                        cgroups: Vec::new(),
                        total: 0,
                        error: Some(e.to_string()),
                    },
                })
                .collect(),
            network: network_reach(g, &named),
            outbound: (!g.outbound.is_empty()).then(|| {
                format!(
                    "{} (checked against the resolved address; the agent's own API is never reachable)",
                    g.outbound.describe()
                )
            }),
            commands: g
                .command
                .iter()
                .map(|p| ProgramReach {
                    rule: p.text(),
                    unusable: crate::capability::command::linux::check_program(&p.path)
                        .err()
                        .map(|e| e.to_string()),
                })
                .collect(),
            filesystem: filesystem_reach(g),
        })
        .collect();
    Explanation {
        agent: std::process::id(),
        never_in_scope,
        grants,
    }
}

fn process_reach(
    scope: &ProcessScope,
    processes: &[ProcInfo],
    protected: &[u32],
    users: &mut Users,
) -> ProcessReach {
    let mut reach = ProcessReach {
        matched: Vec::new(),
        excluded: Vec::new(),
    };
    for p in processes {
        let Some(criterion) = scope.matches(p) else {
            continue;
        };
        let why = proc::never_in_scope(p, protected);
        let entry = ProcessMatch {
            pid: p.pid,
            name: p.name.clone(),
            user: users.name(p.uid),
            uid: p.uid,
            cmdline: p.cmdline.join(" "),
            matched_by: criterion,
            why: why.clone(),
        };
        if why.is_some() {
            reach.excluded.push(entry);
        } else {
            reach.matched.push(entry);
        }
    }
    reach
}

fn network_reach(g: &Grant, named: &[String]) -> Option<NetworkReach> {
    let n = &g.network;
    if !n.host && !n.pid && n.named.is_empty() {
        return None;
    }
    let mut namespaces = Vec::new();
    let mut look = |label: String, ns: Namespace| {
        let (interfaces, error) = match interface_names(&ns) {
            Ok(all) => (
                all.into_iter()
                    .filter(|i| n.interfaces.is_match(i))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        namespaces.push(NamespaceReach {
            namespace: label,
            interfaces,
            error,
        });
    };
    if n.host {
        look("host".to_string(), Namespace::Host);
    }
    for name in named.iter().filter(|name| n.named.is_match(name)) {
        look(format!("named:{name}"), Namespace::Named(name.clone()));
    }
    Some(NetworkReach {
        namespaces,
        pid_namespaces: n.pid,
        interface_globs: n.interfaces.patterns().to_vec(),
        destinations: n
            .destinations
            .as_ref()
            .map(|d| d.iter().map(ToString::to_string).collect()),
        ports: n
            .ports
            .as_ref()
            .map(|p| p.iter().map(ToString::to_string).collect()),
    })
}

fn filesystem_reach(g: &Grant) -> Option<FilesystemReach> {
    use crate::capability::filesystem::linux::{open_root, space};
    let fs = &g.filesystem;
    if fs.directories.is_empty() {
        return None;
    }
    let directories = fs
        .directories
        .iter()
        .map(|d| {
            let mut reach = DirectoryReach {
                directory: d.to_string(),
                total_bytes: 0,
                available_bytes: 0,
                reserve_bytes: 0,
                fillable_bytes: 0,
                error: None,
            };
            match open_root(d.path()).and_then(|dir| space(&dir)) {
                Ok(s) => {
                    reach.total_bytes = s.total;
                    reach.available_bytes = s.available;
                    reach.reserve_bytes = fs.reserve.bytes(s.total);
                    reach.fillable_bytes = s.available.saturating_sub(reach.reserve_bytes);
                }
                Err(e) => reach.error = Some(e.to_string()),
            }
            reach
        })
        .collect();
    Some(FilesystemReach {
        reserve: fs.reserve.to_string(),
        directories,
    })
}

/// The named network namespaces (`ip netns list`: the entries of `/run/netns`), sorted.
fn named_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// User names by uid, looked up once each.
#[derive(Default)]
struct Users(HashMap<u32, String>);

impl Users {
    fn name(&mut self, uid: u32) -> String {
        self.0
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map_or_else(|| uid.to_string(), |u| u.name)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_allow_listed_program_says_whether_it_would_run_now() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("true");
        std::os::unix::fs::symlink("/usr/bin/true", &link).unwrap();
        let policy = Policy::parse(&format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"command\"]\ncommand = {{ programs = [\"/usr/bin/true\", {:?}, {{ path = \"/nonexistent/x\", args = [\"-v\"] }}] }}\n",
            link.display().to_string()
        ))
        .unwrap();
        let e = explain(&policy);
        let c = &e.grants[0].commands;
        assert_eq!(c[0].rule, "\"/usr/bin/true\"");
        assert_eq!(c[0].unusable, None);
        assert!(
            c[1].unusable
                .as_ref()
                .unwrap()
                .contains("is a symlink (to /usr/bin/true)")
        );
        assert_eq!(c[2].rule, r#"{ path = "/nonexistent/x", args = ["-v"] }"#);
        assert!(c[2].unusable.as_ref().unwrap().contains("does not exist"));
    }

    #[test]
    fn the_test_process_is_explained_by_pid_and_never_its_parent() {
        let me = std::process::id();
        let parent = proc::info(me).map(|p| p.ppid).unwrap_or(1);
        let policy = Policy::parse(&format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{me}, {parent}], signals = [\"stop\"] }}\n"
        ))
        .unwrap();
        let e = explain(&policy);
        assert!(e.never_in_scope.iter().any(|x| x.pid == 1 || x.pid == me));
        let reach = e.grants[0].processes.as_ref().unwrap();
        // The test process is the "agent" here: named, but excluded, with the reason.
        assert!(reach.matched.is_empty(), "{:?}", reach.matched);
        let excluded: Vec<u32> = reach.excluded.iter().map(|p| p.pid).collect();
        assert!(excluded.contains(&me), "{excluded:?}");
        assert_eq!(
            reach.excluded[0].matched_by,
            Criterion::Pid(reach.excluded[0].pid)
        );
        assert_eq!(e.grants[0].signals, [SignalName::Stop]);
    }
}
