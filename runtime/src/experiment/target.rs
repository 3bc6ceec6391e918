//! What a fault step acts on, resolved on this host at the moment of the pre-run check, and
//! the grant of the policy that covers each target.
//!
//! A step's [`Targets`] become a list of [`Resolved`] targets; the engine runs the fault once per
//! target, with the step's `params` plus [`Resolved::params`]. Targets naming nothing (no pid,
//! name, cmdline, cgroup, namespace or interface, as for a step without `targets`) resolve to no
//! target: the engine then runs the fault once with its params as written, and `on_empty` does
//! not apply.
//!
//! # What each kind of target resolves to
//!
//! - **Processes**: `pids` OR `names` (exact `/proc/<pid>/comm`, at most 15 bytes) OR `cmdlines`
//!   (regexes over the arguments joined by spaces) select live processes; with `cgroup` too, only
//!   those inside that cgroup subtree (in any hierarchy). Each becomes one target `{pid: N}`
//!   (the fault must take `pid`), labelled `pid N (comm)`, with its start time so a pid reused
//!   since the check is refused. Skipped: processes with an empty command line (kernel threads,
//!   zombies and processes that are exiting) and, whatever the criteria, pid 1, the faultline
//!   process itself and its ancestors (a fault on our own process would stop or kill the run
//!   that has to revert it). A pid listed in `pids` that is one of those, a kernel thread or a
//!   thread of another process is an error; one that does not exist is simply not selected.
//! - **Blast radius** (`select`, processes only): `all` (default), `count: N` (the N lowest pids)
//!   or `percent: P` with 0 < P ≤ 100: ⌈P % of the matches⌉, the lowest pids first, so 10 % of 3
//!   processes is 1, 50 % of 3 is 2. At most [`limits::TARGETS`] targets remain, else it is an
//!   error telling to narrow the selection or use `select`.
//! - **A cgroup** (`cgroup` alone): one target `{path: "/x"}` (cgroup faults) or
//!   `{cgroup: "/x"}` (stress faults), as the fault's schema names it. The path is validated by
//!   [`CgroupPath::parse`] (absolute, no `.` or `..`) and must exist now in at least one mounted
//!   hierarchy (v1 controllers and v2, found as the cgroup capability finds them:
//!   [`CgroupBackend::resolve`]). The root cgroup and a cgroup holding the faultline process are
//!   refused, as the cgroup capability refuses them.
//! - **A network** (`netns` and/or `interfaces`): one target `{netns, interfaces}`. `netns` is a
//!   name under `/run/netns` (1 to 64 bytes, no `/`, not `.` or `..`) or `host`, the faultline
//!   process's own namespace, which is also what no `netns` means. A fault that takes
//!   `interfaces` needs them listed here, 1 to 15 bytes each, and each must exist in that
//!   namespace now: the list is read from `/proc/thread-self/net/dev` on a thread that joined the
//!   namespace ([`interface_names`]; no program is run, nothing changes).
//! - **Processes and a network**: a step targets processes or a network, not both, except that a
//!   fault taking `pid` and `interfaces` (the network faults) may be given processes and
//!   `interfaces` without `netns`: each process becomes `{pid, interfaces}`, the interfaces of
//!   its own network namespace, each checked to exist there.
//!
//! A target kind the fault cannot take (`pids` for a fault without `pid`) is an error naming the
//! keys the fault's parameter schema does take ([`Accepts`]).
//!
//! # Bounds
//!
//! `pids`, `names`, `cmdlines` and `interfaces` list at most 64 entries; a cmdline regex is at
//! most 1 KiB of text and compiles within a 1 MiB size limit (the `regex` crate matches in
//! linear time, so a pattern cannot take exponential time); `/proc` files are read bounded
//! ([`crate::capability::process::linux::info`]).
//!
//! # Blocking
//!
//! [`resolve`] and [`covering_grant`] read `/proc`, the cgroup mounts and network namespaces:
//! they are synchronous and async code calls them through `tokio::task::spawn_blocking`.

use super::spec::{Select, Targets, limits};
use crate::capability::cgroup::linux::{CgroupBackend, Target as CgroupTarget};
use crate::capability::network::linux::{Namespace, interface_names};
use crate::capability::process::linux::{self as proc, ProcInfo};
use crate::policy::{CgroupPath, Grants, NetworkScope};
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

/// At most this many entries in each of `pids`, `names`, `cmdlines` and `interfaces`.
pub const MAX_CRITERIA: usize = 64;
/// The longest cmdline regex, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// The compiled size limit of one cmdline regex, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The longest process name: `/proc/<pid>/comm` holds 15 bytes.
const MAX_NAME: usize = 15;
/// The longest network namespace name.
const MAX_NETNS: usize = 64;
/// The longest interface name (`IFNAMSIZ` less the NUL).
const MAX_INTERFACE: usize = 15;

/// The target keys a fault's parameters accept, read from its parameter schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    /// `pid`.
    pub pid: bool,
    /// `path` (cgroup faults) or `cgroup` (stress faults): the cgroup key, if any.
    pub cgroup_key: Option<&'static str>,
    /// `netns`.
    pub netns: bool,
    /// `interfaces`.
    pub interfaces: bool,
}

impl Accepts {
    /// What a fault's parameter schema (a JSON Schema object) accepts: the keys of its
    /// `properties`. `cgroup` is the cgroup key when present; otherwise `path` is, when its
    /// description mentions a cgroup (a `path` may as well be a file's).
    pub fn of_schema(schema: &Value) -> Accepts {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Accepts::default();
        };
        let cgroup_path = properties.get("path").is_some_and(|p| {
            p.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| d.to_ascii_lowercase().contains("cgroup"))
        });
        Accepts {
            pid: properties.contains_key("pid"),
            cgroup_key: if properties.contains_key("cgroup") {
                Some("cgroup")
            } else if cgroup_path {
                Some("path")
            } else {
                None
            },
            netns: properties.contains_key("netns"),
            interfaces: properties.contains_key("interfaces"),
        }
    }

    /// The target keys it takes, for messages: `` `pid`, `path` ``, or a sentence when none.
    pub fn keys(&self) -> String {
        let mut keys = Vec::new();
        if self.pid {
            keys.push("pid");
        }
        if let Some(k) = self.cgroup_key {
            keys.push(k);
        }
        if self.netns {
            keys.push("netns");
        }
        if self.interfaces {
            keys.push("interfaces");
        }
        if keys.is_empty() {
            "none of the target keys pid, path, cgroup, netns, interfaces".to_string()
        } else {
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Whether the fault acts on a network (takes `netns` or `interfaces`).
    fn network(&self) -> bool {
        self.netns || self.interfaces
    }
}

/// What a resolved target is, which decides the grant that must cover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The process itself (process faults): a process scope must cover it.
    Process,
    /// The cgroup the process is in (a cgroup or stress fault given `pid`): a cgroup subtree
    /// must hold it.
    CgroupOf,
    /// These interfaces in the process's network namespace (a network fault given `pid`): a
    /// process scope must cover the process and a network scope granting `pid` namespaces the
    /// interfaces.
    NetworkOf(Vec<String>),
    /// A cgroup: a cgroup subtree must hold it.
    Cgroup(CgroupPath),
    /// Interfaces of a network namespace (`None`: the host's): a network scope must grant both.
    Network {
        /// The named namespace, `None` for the host's.
        netns: Option<String>,
        /// The interfaces.
        interfaces: Vec<String>,
    },
}

/// One resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// For people: `pid 4242 (demo-service)`, `cgroup /x`, `netns a: veth0`.
    pub label: String,
    /// The parameters it adds to the step's (`pid`, `path`, `netns`, `interfaces`).
    pub params: Map<String, Value>,
    /// A process target's pid and start time (to refuse a pid reused since the check).
    pub process: Option<(u32, u64)>,
    /// What it is, for [`covering_grant`].
    pub kind: Kind,
}

/// The process criteria of a step, validated and compiled once.
struct Criteria {
    pids: Vec<u32>,
    names: Vec<String>,
    cmdlines: Vec<Regex>,
}

impl Criteria {
    fn compile(t: &Targets) -> Result<Criteria, String> {
        for (field, len) in [
            ("pids", t.pids.len()),
            ("names", t.names.len()),
            ("cmdlines", t.cmdlines.len()),
        ] {
            if len > MAX_CRITERIA {
                return Err(format!(
                    "targets.{field}: {len} entries, more than the {MAX_CRITERIA} allowed"
                ));
            }
        }
        if let Some(i) = t.pids.iter().position(|p| *p == 0) {
            return Err(format!("targets.pids[{i}]: 0 is not a process id"));
        }
        for (i, name) in t.names.iter().enumerate() {
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(format!(
                    "targets.names[{i}]: {:?} is not a process name: 1 to {MAX_NAME} bytes \
                     (/proc/<pid>/comm holds the first {MAX_NAME} bytes of the program's name)",
                    clip(name)
                ));
            }
        }
        let cmdlines = t
            .cmdlines
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                if pattern.len() > MAX_PATTERN {
                    return Err(format!(
                        "targets.cmdlines[{i}]: the regex is {} bytes, more than the {MAX_PATTERN} allowed",
                        pattern.len()
                    ));
                }
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        format!("targets.cmdlines[{i}]: {:?} is not a regex: {e}", clip(pattern))
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut pids = t.pids.clone();
        pids.sort_unstable();
        pids.dedup();
        Ok(Criteria {
            pids,
            names: t.names.clone(),
            cmdlines,
        })
    }

    fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.names.is_empty() && self.cmdlines.is_empty()
    }

    /// Whether `p` matches a criterion: pid OR name OR cmdline.
    fn matches(&self, p: &ProcInfo) -> bool {
        self.pids.contains(&p.pid)
            || self.names.contains(&p.name)
            || (!self.cmdlines.is_empty() && {
                let joined = p.cmdline.join(" ");
                self.cmdlines.iter().any(|re| re.is_match(&joined))
            })
    }

    /// Which criteria were given, for messages (`pids, cmdlines`).
    fn fields(t: &Targets) -> String {
        let mut fields = Vec::new();
        for (field, given) in [
            ("pids", !t.pids.is_empty()),
            ("names", !t.names.is_empty()),
            ("cmdlines", !t.cmdlines.is_empty()),
        ] {
            if given {
                fields.push(format!("targets.{field}"));
            }
        }
        fields.join(", ")
    }
}

/// `text` with control characters escaped (`\u{1b}`): process and interface names are chosen
/// by whoever runs them, and labels end up on terminals.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// At most 64 characters of `text`, for quoting hostile input in a message.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Resolves a step's targets on this host: the processes, cgroup or interfaces they name now,
/// the blast radius applied. An empty result is not an error here (the caller applies
/// `on_empty`); a target the fault cannot take is. Reads `/proc`, cgroup mounts and network
/// namespaces: sync, called through `spawn_blocking`.
pub fn resolve(targets: &Targets, accepts: Accepts) -> Result<Vec<Resolved>, String> {
    let criteria = Criteria::compile(targets)?;
    let cgroup = targets
        .cgroup
        .as_deref()
        .map(|c| CgroupPath::parse(c).map_err(|e| format!("targets.cgroup: {e}")))
        .transpose()?;
    let netns = targets.netns.as_deref().map(netns_name).transpose()?;
    let interfaces = interface_list(&targets.interfaces)?;
    let select = targets.select.unwrap_or(Select::All);
    check_select(select)?;
    let network = targets.netns.is_some() || !interfaces.is_empty();
    let processes = !criteria.is_empty();
    if select != Select::All && !processes {
        return Err(
            "targets.select picks among processes, and this step names none (give pids, names \
             or cmdlines)"
                .to_string(),
        );
    }
    if network {
        if targets.netns.is_some() && !accepts.netns {
            return Err(format!(
                "targets.netns: the fault takes no `netns` parameter (it takes {})",
                accepts.keys()
            ));
        }
        if !interfaces.is_empty() && !accepts.interfaces {
            return Err(format!(
                "targets.interfaces: the fault takes no `interfaces` parameter (it takes {})",
                accepts.keys()
            ));
        }
    }
    if processes {
        if !accepts.pid {
            return Err(format!(
                "{} select processes, but the fault takes no `pid` parameter (it takes {})",
                Criteria::fields(targets),
                accepts.keys()
            ));
        }
        if network && (netns.is_some() || !accepts.interfaces) {
            return Err(format!(
                "a step targets processes or a network, not both: {} name processes and {} a \
                 network (a network fault may take processes with `interfaces` and no `netns`: \
                 the interfaces of each process's own namespace)",
                Criteria::fields(targets),
                if targets.netns.is_some() {
                    "targets.netns"
                } else {
                    "targets.interfaces"
                }
            ));
        }
        if accepts.interfaces && interfaces.is_empty() {
            return Err(
                "targets.interfaces: the fault acts on interfaces of each process's network \
                 namespace; list them"
                    .to_string(),
            );
        }
        if let Some(c) = &cgroup {
            cgroup_exists(c)?;
        }
        return process_targets(&criteria, cgroup.as_ref(), select, &interfaces, accepts);
    }
    if let Some(c) = cgroup {
        if network {
            return Err(
                "a step targets a cgroup or a network, not both: targets.cgroup names a cgroup \
                 and targets.netns or targets.interfaces a network"
                    .to_string(),
            );
        }
        let Some(key) = accepts.cgroup_key else {
            return Err(format!(
                "targets.cgroup: the fault takes no cgroup parameter (it takes {}){}",
                accepts.keys(),
                if accepts.pid {
                    "; to act on processes inside the cgroup, add pids, names or cmdlines"
                } else {
                    ""
                }
            ));
        };
        return cgroup_target(c, key).map(|t| vec![t]);
    }
    if network {
        return network_target(netns.flatten(), interfaces, accepts).map(|t| vec![t]);
    }
    Ok(Vec::new())
}

fn check_select(select: Select) -> Result<(), String> {
    match select {
        Select::All => Ok(()),
        Select::Count(0) => Err("targets.select.count: 0 processes; give at least 1".to_string()),
        Select::Count(_) => Ok(()),
        Select::Percent(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Ok(()),
        Select::Percent(p) => Err(format!(
            "targets.select.percent: {p} is not a percentage above 0 and at most 100"
        )),
    }
}

/// How many of `matched` processes the blast radius keeps: all, at most N, or ⌈P % of them⌉.
pub fn selected(select: Select, matched: usize) -> usize {
    match select {
        Select::All => matched,
        Select::Count(n) => matched.min(usize::try_from(n).unwrap_or(usize::MAX)),
        Select::Percent(p) => {
            // Rounded up, so any P > 0 of a non-empty selection is at least one process; the
            // tiny slack keeps 7 % of 100 at 7 when the float product lands at 7.000000000000001.
            let share = (matched as f64 * p / 100.0 - 1e-9).ceil();
            if share <= 0.0 {
                0
            } else {
                (share as usize).min(matched)
            }
        }
    }
}

/// `netns` validated: `None` for `host` (the faultline process's own), else the name.
fn netns_name(name: &str) -> Result<Option<String>, String> {
    if name == "host" {
        return Ok(None);
    }
    let ok = !name.is_empty()
        && name.len() <= MAX_NETNS
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if !ok {
        return Err(format!(
            "targets.netns: {:?} is not a network namespace name (1 to {MAX_NETNS} bytes, no `/`, \
             not `.` or `..`; a namespace under /run/netns, or `host`)",
            clip(name)
        ));
    }
    Ok(Some(name.to_string()))
}

fn interface_list(interfaces: &[String]) -> Result<Vec<String>, String> {
    if interfaces.len() > MAX_CRITERIA {
        return Err(format!(
            "targets.interfaces: {} entries, more than the {MAX_CRITERIA} allowed",
            interfaces.len()
        ));
    }
    for (i, name) in interfaces.iter().enumerate() {
        let ok = !name.is_empty()
            && name.len() <= MAX_INTERFACE
            && name != "."
            && name != ".."
            && !name.contains(['/', '\0'])
            && !name.chars().any(char::is_whitespace);
        if !ok {
            return Err(format!(
                "targets.interfaces[{i}]: {:?} is not an interface name (1 to {MAX_INTERFACE} \
                 bytes, no `/` or spaces)",
                clip(name)
            ));
        }
    }
    let mut list: Vec<String> = Vec::with_capacity(interfaces.len());
    for name in interfaces {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    Ok(list)
}

/// Every process the criteria select now, in pid order, inside `cgroup` when given, the
/// protected ones and those without a command line left out, the blast radius applied.
fn process_targets(
    criteria: &Criteria,
    cgroup: Option<&CgroupPath>,
    select: Select,
    interfaces: &[String],
    accepts: Accepts,
) -> Result<Vec<Resolved>, String> {
    let protected = proc::protected_pids();
    // Named pids are judged one by one, so a pid the run could never touch is an error rather
    // than a silent empty selection.
    let mut explicit = Vec::new();
    for &pid in &criteria.pids {
        let Some(p) = proc::info(pid) else { continue };
        if let Some(why) = proc::never_in_scope(&p, &protected) {
            return Err(format!(
                "targets.pids: {why} (the faultline process, its ancestors and pid 1 are never targets)"
            ));
        }
        if p.tgid != p.pid {
            return Err(format!(
                "targets.pids: {pid} is a thread of process {}; name the process",
                p.tgid
            ));
        }
        if p.cmdline.is_empty() && p.state != 'Z' && p.state != 'X' {
            return Err(format!(
                "targets.pids: {pid} ({}) is a kernel thread, never a target",
                printable(&p.name)
            ));
        }
        explicit.push(p);
    }
    let candidates = if criteria.names.is_empty() && criteria.cmdlines.is_empty() {
        explicit
    } else {
        proc::list()
    };
    let mut matched: Vec<ProcInfo> = candidates
        .into_iter()
        .filter(|p| {
            !p.cmdline.is_empty()
                && !matches!(p.state, 'Z' | 'X')
                && proc::never_in_scope(p, &protected).is_none()
                && criteria.matches(p)
                && cgroup.is_none_or(|c| p.cgroups.iter().any(|pc| c.contains(pc)))
        })
        .collect();
    matched.sort_by_key(|p| p.pid);
    matched.dedup_by_key(|p| p.pid);
    let keep = selected(select, matched.len());
    matched.truncate(keep);
    if matched.len() > limits::TARGETS {
        return Err(format!(
            "{} processes are selected, more than the {} targets one step may have: narrow the \
             selection (pids, names, cmdlines, cgroup) or limit it with select (count or percent)",
            matched.len(),
            limits::TARGETS
        ));
    }
    matched
        .into_iter()
        .map(|p| {
            let mut params = Map::new();
            params.insert("pid".to_string(), Value::from(p.pid));
            let mut label = format!("pid {} ({})", p.pid, printable(&p.name));
            let kind = if accepts.network() {
                if !interfaces.is_empty() {
                    interfaces_exist(&Namespace::Pid(p.pid), interfaces, &label)?;
                    params.insert("interfaces".to_string(), Value::from(interfaces.to_vec()));
                    label = format!("{label}: {}", interfaces.join(", "));
                }
                Kind::NetworkOf(interfaces.to_vec())
            } else if accepts.cgroup_key.is_some() {
                Kind::CgroupOf
            } else {
                Kind::Process
            };
            Ok(Resolved {
                label,
                params,
                process: Some((p.pid, p.start_time)),
                kind,
            })
        })
        .collect()
}

/// Fails unless `cgroup` exists now in a mounted hierarchy.
fn cgroup_exists(cgroup: &CgroupPath) -> Result<(), String> {
    let backend = CgroupBackend::new().map_err(|e| format!("targets.cgroup: {e}"))?;
    backend
        .resolve(&CgroupTarget::Path(cgroup.to_string()))
        .map(|_| ())
        .map_err(|e| format!("targets.cgroup: cgroup {cgroup} does not exist now ({e})"))
}

fn cgroup_target(cgroup: CgroupPath, key: &str) -> Result<Resolved, String> {
    if cgroup.as_str() == "/" {
        return Err("targets.cgroup: the root cgroup is never a target".to_string());
    }
    cgroup_exists(&cgroup)?;
    // The cgroup capability refuses a cgroup holding the agent; refusing it here says so before
    // the run rather than in the middle of it.
    if let Some(me) = proc::info(std::process::id())
        && let Some(mine) = me.cgroups.iter().find(|c| cgroup.contains(c))
    {
        return Err(format!(
            "targets.cgroup: cgroup {cgroup} holds the faultline process itself (its cgroup is \
             {mine}), never a target"
        ));
    }
    let mut params = Map::new();
    params.insert(key.to_string(), Value::from(cgroup.as_str()));
    Ok(Resolved {
        label: format!("cgroup {cgroup}"),
        params,
        process: None,
        kind: Kind::Cgroup(cgroup),
    })
}

fn network_target(
    netns: Option<String>,
    interfaces: Vec<String>,
    accepts: Accepts,
) -> Result<Resolved, String> {
    if accepts.interfaces && interfaces.is_empty() {
        return Err(
            "targets.interfaces: the fault acts on interfaces of the namespace; list them"
                .to_string(),
        );
    }
    let shown = netns.as_deref().unwrap_or("host");
    let namespace = match &netns {
        Some(name) => {
            let path = std::path::Path::new("/run/netns").join(name);
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(format!(
                    "targets.netns: network namespace {name:?} does not exist (no {})",
                    path.display()
                ));
            }
            Namespace::Named(name.clone())
        }
        None => Namespace::Host,
    };
    let label = if interfaces.is_empty() {
        format!("netns {shown}")
    } else {
        format!("netns {shown}: {}", interfaces.join(", "))
    };
    interfaces_exist(&namespace, &interfaces, &format!("netns {shown}"))?;
    let mut params = Map::new();
    if accepts.netns {
        params.insert("netns".to_string(), Value::from(shown));
    }
    if !interfaces.is_empty() {
        params.insert("interfaces".to_string(), Value::from(interfaces.clone()));
    }
    Ok(Resolved {
        label,
        params,
        process: None,
        kind: Kind::Network { netns, interfaces },
    })
}

/// Fails unless each of `interfaces` exists in `namespace` now.
fn interfaces_exist(
    namespace: &Namespace,
    interfaces: &[String],
    what: &str,
) -> Result<(), String> {
    if interfaces.is_empty() {
        return Ok(());
    }
    let present = interface_names(namespace)
        .map_err(|e| format!("targets.interfaces: cannot list the interfaces of {what}: {e}"))?;
    match interfaces.iter().find(|i| !present.contains(i)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "targets.interfaces: {what} has no interface {missing:?} (it has {})",
            printable(&present.join(", "))
        )),
    }
}

/// The rule of `grants` that covers `target`, or why none does: `grant 1 (process-pause@^0.1):
/// pids = [42]`. Process targets are read again from `/proc` (and refused when the pid now
/// belongs to another process) and judged by [`crate::policy::ProcessScope::matches`]; cgroups
/// by the cgroup subtrees ([`CgroupPath::contains`]); networks by a network scope that grants
/// the namespace and every interface. Capabilities, and a network fault's destinations and
/// ports (parameters, not targets), are checked elsewhere: the capabilities by the caller, the
/// traffic by the network capability at the call. Sync: reads `/proc` and network namespaces.
pub fn covering_grant(grants: &Grants, target: &Resolved) -> Result<String, String> {
    let uncovered = |what: &str| {
        format!(
            "no grant covers {} ({what}); rules consulted: {}",
            target.label,
            grants.rules_text()
        )
    };
    match &target.kind {
        Kind::Process => {
            let p = live(target)?;
            process_rule(grants, &p).ok_or_else(|| uncovered("no process scope matches it"))
        }
        Kind::CgroupOf => {
            let p = live(target)?;
            p.cgroups
                .iter()
                .filter(|c| c.as_str() != "/")
                .find_map(|c| subtree_rule(grants, c).map(|r| format!("{r} holds its cgroup {c}")))
                .ok_or_else(|| uncovered("no granted cgroup subtree holds its cgroup"))
        }
        Kind::NetworkOf(interfaces) => {
            let p = live(target)?;
            let by_process =
                process_rule(grants, &p).ok_or_else(|| uncovered("no process scope matches it"))?;
            let by_network = network_rule(grants, |s| s.pid, interfaces).ok_or_else(|| {
                uncovered("no network scope grants `pid` namespaces and these interfaces")
            })?;
            Ok(format!("{by_process}; {by_network}"))
        }
        Kind::Cgroup(path) => subtree_rule(grants, path.as_str())
            .ok_or_else(|| uncovered("no granted cgroup subtree holds it")),
        Kind::Network { netns, interfaces } => {
            let fits_ns = |s: &NetworkScope| match netns {
                None => s.host,
                Some(name) => s.named.is_match(name),
            };
            network_rule(grants, fits_ns, interfaces).ok_or_else(|| {
                uncovered("no network scope grants this namespace and these interfaces")
            })
        }
    }
}

/// The process of a process target, if it is still the one resolved and still a target.
fn live(target: &Resolved) -> Result<ProcInfo, String> {
    let Some((pid, start)) = target.process else {
        return Err(format!("{} names no process", target.label));
    };
    let p = proc::info(pid)
        .filter(|p| p.start_time == start)
        .ok_or_else(|| {
            format!(
                "{} is gone: the process exited (or its pid now belongs to another) since it was resolved",
                target.label
            )
        })?;
    if let Some(why) = proc::never_in_scope(&p, &proc::protected_pids()) {
        return Err(why);
    }
    Ok(p)
}

fn process_rule(grants: &Grants, p: &ProcInfo) -> Option<String> {
    grants
        .process
        .iter()
        .find_map(|s| s.scope.matches(p).map(|c| format!("{}: {c}", s.rule)))
}

/// The cgroup subtree holding `path`, named with its grant. `Grants::cgroup` is the union of the
/// matching grants' subtrees, so with several matching grants the rule is one of them.
fn subtree_rule(grants: &Grants, path: &str) -> Option<String> {
    let subtree = grants.cgroup.iter().find(|s| s.contains(path))?;
    Some(match grants.rules.as_slice() {
        [one] => format!("{one}: cgroup.subtrees = [{:?}]", subtree.as_str()),
        rules => format!(
            "cgroup.subtrees = [{:?}] (of {})",
            subtree.as_str(),
            rules.join(" or ")
        ),
    })
}

fn network_rule(
    grants: &Grants,
    fits_ns: impl Fn(&NetworkScope) -> bool,
    interfaces: &[String],
) -> Option<String> {
    grants
        .network
        .iter()
        .find(|s| {
            fits_ns(&s.scope)
                && !interfaces.is_empty()
                && interfaces.iter().all(|i| s.scope.interfaces.is_match(i))
        })
        .map(|s| {
            let mut namespaces = Vec::new();
            if s.scope.host {
                namespaces.push("host".to_string());
            }
            if s.scope.pid {
                namespaces.push("pid".to_string());
            }
            namespaces.extend(
                s.scope
                    .named
                    .patterns()
                    .iter()
                    .map(|p| format!("named:{p}")),
            );
            format!(
                "{}: network.namespaces = {namespaces:?}, network.interfaces = {:?}",
                s.rule,
                s.scope.interfaces.patterns()
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_up_and_count_caps() {
        let table = [
            (Select::Percent(10.0), 3, 1),
            (Select::Percent(50.0), 3, 2),
            (Select::Percent(100.0), 3, 3),
            (Select::Percent(33.0), 3, 1),
            (Select::Percent(34.0), 3, 2),
            (Select::Percent(7.0), 100, 7),
            (Select::Percent(0.1), 1, 1),
            (Select::Percent(50.0), 0, 0),
            (Select::Count(2), 3, 2),
            (Select::Count(5), 3, 3),
            (Select::All, 3, 3),
        ];
        for (select, matched, want) in table {
            assert_eq!(selected(select, matched), want, "{select:?} of {matched}");
        }
        assert!(check_select(Select::Percent(0.0)).is_err());
        assert!(check_select(Select::Percent(100.5)).is_err());
        assert!(check_select(Select::Percent(f64::NAN)).is_err());
        assert!(check_select(Select::Count(0)).is_err());
    }

    #[test]
    fn the_bundled_schemas_name_their_target_keys() {
        let index: Value = serde_json::from_str(include_str!("../../../hub-index.json")).unwrap();
        let accepts = |name: &str| {
            let package = index["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap();
            Accepts::of_schema(&package["versions"][0]["params_schema"])
        };
        let pid_only = Accepts {
            pid: true,
            ..Accepts::default()
        };
        assert_eq!(accepts("process-pause"), pid_only);
        assert_eq!(
            accepts("cgroup-freeze"),
            Accepts {
                pid: true,
                cgroup_key: Some("path"),
                ..Accepts::default()
            }
        );
        assert_eq!(
            accepts("stress-cpu"),
            Accepts {
                cgroup_key: Some("cgroup"),
                ..Accepts::default()
            }
        );
        assert_eq!(
            accepts("io-stress"),
            Accepts {
                pid: true,
                cgroup_key: Some("cgroup"),
                ..Accepts::default()
            }
        );
        assert_eq!(
            accepts("network-delay"),
            Accepts {
                pid: true,
                cgroup_key: None,
                netns: true,
                interfaces: true,
            }
        );
        assert_eq!(accepts("disk-fill"), Accepts::default());
        assert_eq!(
            accepts("network-delay").keys(),
            "`pid`, `netns`, `interfaces`"
        );
        assert!(Accepts::default().keys().starts_with("none of"));
        // A `path` that is not a cgroup's is no cgroup key.
        let file = serde_json::json!({"properties": {"path": {"description": "a file"}}});
        assert_eq!(Accepts::of_schema(&file), Accepts::default());
    }

    #[test]
    fn names_and_interfaces_are_bounded() {
        let t = Targets {
            names: vec!["a-name-longer-than-15".to_string()],
            ..Targets::default()
        };
        let e = Criteria::compile(&t).err().unwrap();
        assert!(e.starts_with("targets.names[0]: "), "{e}");
        let t = Targets {
            pids: (1..=65).collect(),
            ..Targets::default()
        };
        let e = Criteria::compile(&t).err().unwrap();
        assert_eq!(e, "targets.pids: 65 entries, more than the 64 allowed");
        let e = interface_list(&["eth 0".to_string()]).unwrap_err();
        assert!(
            e.starts_with("targets.interfaces[0]: \"eth 0\" is not"),
            "{e}"
        );
        assert!(interface_list(&["a-very-long-interface".to_string()]).is_err());
        assert_eq!(netns_name("host").unwrap(), None);
        assert!(netns_name(&"n".repeat(65)).is_err());
        assert!(netns_name("..").is_err());
        assert_eq!(clip(&"x".repeat(100)).chars().count(), 65);
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            interface_list(&["v0".to_string(), "lo".to_string(), "v0".to_string()]).unwrap(),
            ["v0", "lo"]
        );
    }
}
