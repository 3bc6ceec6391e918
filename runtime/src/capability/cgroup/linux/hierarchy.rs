//! Which cgroup hierarchies are mounted (from `/proc/self/mountinfo`), where a process sits in
//! each (from `/proc/PID/cgroup`), and the path rules every target passes.

use std::path::PathBuf;

use crate::capability::{CapError, CapResult};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    /// 1 or 2.
    pub version: u8,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/cpu`.
    pub mount: PathBuf,
    /// The cgroup the mount shows at its top (mountinfo's root field): `/` unless a sub-cgroup
    /// is bind-mounted, as in some containers.
    pub root: String,
    /// v1: the controllers bound to it (`cpu`, `cpuacct`…); v2: empty, as v2 enables
    /// controllers per cgroup (`cgroup.controllers`).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// Whether this is the v1 hierarchy of `controller`, or the v2 one when `controller` is None.
    pub fn is(&self, version: u8, controller: Option<&str>) -> bool {
        match (version, controller) {
            (1, Some(c)) => self.version == 1 && self.controllers.iter().any(|h| h == c),
            (2, None) => self.version == 2,
            _ => false,
        }
    }

    /// Maps a path from `/proc/PID/cgroup` onto this mount, None when the mount does not show it.
    pub fn visible(&self, full: &str) -> Option<String> {
        if self.root == "/" {
            return Some(full.to_string());
        }
        let rest = full.strip_prefix(self.root.as_str())?;
        if rest.is_empty() {
            Some("/".to_string())
        } else if rest.starts_with('/') {
            Some(rest.to_string())
        } else {
            None
        }
    }
}

/// cgroup v1 mount options that are not controller names.
const V1_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "all",
];

/// The cgroup hierarchies in a mountinfo table, first mount of each kept; v1 hierarchies
/// without a controller (`name=systemd`) are left out: nothing here can be set on them.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype), Some(superopts)) =
            (left.get(3), left.get(4), right.first(), right.get(2))
        else {
            continue;
        };
        let hierarchy = match *fstype {
            "cgroup2" => Hierarchy {
                version: 2,
                mount: PathBuf::from(unescape(mount)),
                root: unescape(root),
                controllers: Vec::new(),
            },
            "cgroup" => {
                let controllers: Vec<String> = superopts
                    .split(',')
                    .filter(|o| !o.contains('=') && !V1_OPTIONS.contains(o))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                Hierarchy {
                    version: 1,
                    mount: PathBuf::from(unescape(mount)),
                    root: unescape(root),
                    controllers,
                }
            }
            _ => continue,
        };
        let seen = found
            .iter()
            .any(|h| h.version == hierarchy.version && h.controllers == hierarchy.controllers);
        if !seen {
            found.push(hierarchy);
        }
    }
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let (b'\\', Some(digits)) = (bytes[i], bytes.get(i + 1..i + 4))
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/PID/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Membership {
    /// 0 for v2.
    pub hierarchy_id: u32,
    /// v1 controllers of that hierarchy, `name=` entries left out; empty for v2.
    pub controllers: Vec<String>,
    /// The cgroup, as the process's cgroup namespace shows it.
    pub path: String,
}

/// Parses `/proc/PID/cgroup`.
pub(super) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty() && !c.starts_with("name="))
                .map(str::to_string)
                .collect();
            let path = parts.next()?;
            // A removed v2 cgroup shows as "/path (deleted)".
            let path = path.strip_suffix(" (deleted)").unwrap_or(path).to_string();
            Some(Membership {
                hierarchy_id: id,
                controllers,
                path,
            })
        })
        .collect()
}

/// Where `memberships` puts a process in `hierarchy`, relative to its mount.
pub(super) fn locate(memberships: &[Membership], hierarchy: &Hierarchy) -> Option<String> {
    memberships
        .iter()
        .find(|m| {
            if hierarchy.version == 2 {
                m.hierarchy_id == 0
            } else {
                m.hierarchy_id != 0
                    && !m.controllers.is_empty()
                    && m.controllers.len() == hierarchy.controllers.len()
                    && m.controllers
                        .iter()
                        .all(|c| hierarchy.controllers.contains(c))
            }
        })
        .and_then(|m| hierarchy.visible(&m.path))
}

/// A cgroup path in canonical form (`/a/b`, root `/`). `.` and `..` components are refused, so a
/// checked path can never name something outside the subtree it was checked against.
pub(super) fn normalize(path: &str) -> CapResult<String> {
    if path.contains('\0') {
        return Err(CapError::Invalid(format!(
            "cgroup path {path:?} contains a NUL byte"
        )));
    }
    if !path.starts_with('/') {
        return Err(CapError::Invalid(format!(
            "cgroup path {path:?} must start with '/' (it is relative to the hierarchy root)"
        )));
    }
    let mut parts = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(CapError::Denied(format!(
                "cgroup path {path:?} contains {part:?}: paths must name the cgroup directly"
            )));
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether canonical `path` is `ancestor` or lies below it.
pub(super) fn within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` relative to `ancestor` (both canonical, `path` within `ancestor`), empty when equal.
pub(super) fn relative<'a>(path: &'a str, ancestor: &str) -> &'a str {
    let rest = if ancestor == "/" {
        path
    } else {
        path.strip_prefix(ancestor).unwrap_or(path)
    };
    rest.trim_start_matches('/')
}

/// The scope rule every target passes: inside a granted subtree, not the root cgroup, and not a
/// cgroup that holds the agent. Returns the granted subtree that contains `path`.
pub(super) fn check_scope(
    path: &str,
    allowed: &[impl AsRef<str>],
    agent: Option<&str>,
) -> CapResult<String> {
    if path == "/" {
        return Err(CapError::Denied(
            "the root cgroup is never a target, whatever the grant".to_string(),
        ));
    }
    if let Some(agent) = agent
        && within(agent, path)
    {
        return Err(CapError::Denied(format!(
            "cgroup {path} holds the agent itself (its cgroup is {agent}), whatever the grant"
        )));
    }
    // Policy subtrees arrive validated (`policy::CgroupPath`); anything else that does not
    // normalise is an error, never silently "nothing".
    let granted = allowed
        .iter()
        .map(|entry| normalize(entry.as_ref()))
        .collect::<CapResult<Vec<_>>>()?;
    // The deepest grant confines file access most tightly.
    granted
        .iter()
        .filter(|s| within(path, s))
        .max_by_key(|s| s.len())
        .cloned()
        .ok_or_else(|| {
            CapError::Denied(format!(
                "cgroup {path} is outside the granted subtrees [{}]",
                granted.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:38 / /mnt/cg\\040two rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn hybrid_layout_is_detected() {
        let hs = parse_mountinfo(HYBRID);
        let names: Vec<_> = hs
            .iter()
            .map(|h| (h.version, h.controllers.join(",")))
            .collect();
        assert_eq!(
            names,
            [
                (1, "cpu".to_string()),
                (1, "cpuacct".to_string()),
                (1, "memory".to_string()),
                (1, "freezer".to_string()),
                (2, String::new()),
            ]
        );
        assert_eq!(hs[4].mount, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn comounted_and_escaped() {
        let text = "1 0 0:1 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    2 0 0:2 / /mnt/a\\040b rw - cgroup2 none rw,nsdelegate";
        let hs = parse_mountinfo(text);
        assert_eq!(hs[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hs[0].root, "/docker/abc");
        assert_eq!(hs[1].mount, PathBuf::from("/mnt/a b"));
        let m = parse_proc_cgroup("3:cpu,cpuacct:/docker/abc/x\n0::/y (deleted)\n");
        assert_eq!(locate(&m, &hs[0]).as_deref(), Some("/x"));
        assert_eq!(locate(&m, &hs[1]).as_deref(), Some("/y"));
        let m = parse_proc_cgroup("3:cpu,cpuacct:/other\n");
        assert_eq!(locate(&m, &hs[0]), None);
    }

    #[test]
    fn paths_are_canonical_and_confined() {
        assert_eq!(normalize("//a/b/").as_deref(), Ok("/a/b"));
        assert_eq!(normalize("/").as_deref(), Ok("/"));
        assert!(matches!(normalize("/a/../b"), Err(CapError::Denied(_))));
        assert!(matches!(normalize("a"), Err(CapError::Invalid(_))));
        assert!(within("/a/b", "/a"));
        assert!(!within("/ab", "/a"));
        assert_eq!(relative("/a/b/c", "/a"), "b/c");
        assert_eq!(relative("/a", "/a"), "");
        assert_eq!(relative("/a", "/"), "a");
    }

    #[test]
    fn scope_rules() {
        let allowed = ["/bar".to_string(), "/bar/baz".to_string()];
        let err = check_scope("/foo", &allowed, None);
        assert_eq!(
            err,
            Err(CapError::Denied(
                "cgroup /foo is outside the granted subtrees [/bar, /bar/baz]".to_string()
            ))
        );
        assert_eq!(
            check_scope("/bar/baz/q", &allowed, None).as_deref(),
            Ok("/bar/baz")
        );
        let all = ["/".to_string()];
        assert!(matches!(
            check_scope("/", &all, None),
            Err(CapError::Denied(_))
        ));
        assert!(matches!(
            check_scope("/a", &all, Some("/a/agent")),
            Err(CapError::Denied(_))
        ));
        assert!(check_scope("/a", &all, Some("/ab")).is_ok());
    }
}
