//! The operator's policy: which capabilities each component may use, and on what. Deny by
//! default: a component gets nothing no grant names.
//!
//! ```toml
//! [[grant]]
//! component = "process-pause@^0.1"     # a hub name, name@semver-range, or sha256:<hex>
//! capabilities = ["log", "rollback", "process"]
//! process = { names = ["nginx"], cmdlines = ["^/usr/bin/java .*app.jar"], signals = ["stop", "cont"], stress = ["cpu"] }
//! cgroup = { subtrees = ["/system.slice/nginx.service"] }
//! network = { namespaces = ["host", "pid", "named:app-*"], interfaces = ["eth0"], destinations = ["10.0.0.0/8"], ports = ["80", "8000-8100"] }
//! outbound = { destinations = ["127.0.0.1"], ports = [8080], hosts = ["localhost"] }
//! filesystem = { directories = ["/var/tmp/chaos"], reserve = "10%" }
//! command = { programs = ["/usr/bin/pg_isready", { path = "/usr/bin/systemctl", args = ["is-active", "nginx*"] }] }
//! ```
//!
//! Every value is compiled when the policy is read ([`scope`]); a bad one is an error naming the
//! grant, the field and the value. How the fields combine is in `docs/policy.md`; what a policy
//! reaches on a host right now is [`explain::explain`].
//!
//! Whatever the policy says, pid 1, the agent and its ancestors (and their threads) are never in
//! scope (the process capability enforces that).

pub mod explain;
pub mod scope;

pub use scope::{
    ArgGlob, CgroupPath, Criterion, FilesystemScope, Globs, GrantedDirectory, NetworkScope,
    OutboundScope, PortRange, ProcessScope, ProgramRule, Reserve, SignalName, StressKind,
};

use anyhow::{Context as _, Result};
use serde::Deserialize;
use std::path::Path;

/// A capability interface of the contract.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `log`: writing to the execution's log.
    Log,
    /// `rollback`: undoing the plug-in's own changes.
    Rollback,
    /// `process`: finding and signalling processes, stress workers.
    Process,
    /// `cgroup`: limits, freeze.
    Cgroup,
    /// `network`: network faults.
    Network,
    /// `outbound`: TCP and HTTP for probes (`faultline:contract/outbound`, `wasi:http`,
    /// `wasi:sockets`).
    Outbound,
    /// `filesystem`: files in granted directories, for faults.
    Filesystem,
    /// `command`: allow-listed programs, for probes.
    Command,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 8] = [
        Capability::Log,
        Capability::Rollback,
        Capability::Process,
        Capability::Cgroup,
        Capability::Network,
        Capability::Outbound,
        Capability::Filesystem,
        Capability::Command,
    ];

    /// The WIT interface name (`process`).
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Rollback => "rollback",
            Capability::Process => "process",
            Capability::Cgroup => "cgroup",
            Capability::Network => "network",
            Capability::Outbound => "outbound",
            Capability::Filesystem => "filesystem",
            Capability::Command => "command",
        }
    }

    /// Whether a plug-in's `describe()` can name it: the 0.1 `capability` enum knows the
    /// interfaces of 0.1.0 only.
    pub fn declarable(self) -> bool {
        !matches!(self, Capability::Filesystem | Capability::Command)
    }

    /// The capability whose WIT interface is `name`.
    pub fn from_interface(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.interface() == name)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}

/// Why a policy cannot be used: the TOML does not parse, or a value in a grant is bad. A bad
/// value is never dropped to mean "nothing" or "any".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML, or not the policy's shape (unknown field, wrong type, unknown capability).
    #[error("invalid policy: {0}")]
    Syntax(String),
    /// A value of grant `grant` (1-based) is bad: `field` is `network.destinations[1]`.
    #[error("grant {grant}: {field}: {problem}")]
    Value {
        /// The grant's number, in file order from 1.
        grant: usize,
        /// Where in the grant (`component`, `network.destinations[1]`).
        field: String,
        /// What is wrong, quoting the value.
        problem: String,
    },
}

/// Which components a grant applies to, as the `component` field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentMatcher {
    /// `*`: every component.
    Any,
    /// `sha256:<hex>`: exactly these bytes.
    Digest(String),
    /// `name` or `name@<range>`: releases of that name from a verified hub.
    Hub {
        /// The package name.
        name: String,
        /// The semver range; `None` for every version.
        range: Option<semver::VersionReq>,
    },
}

impl ComponentMatcher {
    /// Parses the `component` field.
    pub fn parse(spec: &str) -> Result<ComponentMatcher, String> {
        if spec == "*" {
            return Ok(ComponentMatcher::Any);
        }
        if let Some(hex) = spec.strip_prefix("sha256:") {
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{spec:?} is not sha256:<64 hex digits>"));
            }
            return Ok(ComponentMatcher::Digest(spec.to_ascii_lowercase()));
        }
        let (name, range) = match spec.split_once('@') {
            Some((name, req)) => {
                let req = semver::VersionReq::parse(req)
                    .map_err(|e| format!("{req:?} is not a semver range: {e}"))?;
                (name, Some(req))
            }
            None => (spec, None),
        };
        if name.is_empty() {
            return Err(format!("{spec:?} has no component name"));
        }
        Ok(ComponentMatcher::Hub {
            name: name.to_string(),
            range,
        })
    }

    /// Whether the component known by `who` is one of these.
    pub fn matches(&self, who: &Identity) -> bool {
        match self {
            ComponentMatcher::Any => true,
            ComponentMatcher::Digest(d) => d.eq_ignore_ascii_case(&who.digest),
            // Names and versions are only known for verified hub releases: a local file
            // matches digest grants (and `*`) only, whatever it calls itself.
            ComponentMatcher::Hub { name, range } => who.origin.as_ref().is_some_and(|o| {
                *name == o.name && range.as_ref().is_none_or(|r| r.matches(&o.version))
            }),
        }
    }

    /// What it matches, in words (`hub releases named x in range ^0.1`).
    pub fn describe(&self) -> String {
        match self {
            ComponentMatcher::Any => "every component".to_string(),
            ComponentMatcher::Digest(d) => format!("the component whose bytes have digest {d}"),
            ComponentMatcher::Hub { name, range: None } => {
                format!("hub releases named {name}, any version")
            }
            ComponentMatcher::Hub {
                name,
                range: Some(r),
            } => format!("hub releases named {name} in range {r}"),
        }
    }
}

/// One grant of the policy, compiled.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Its number, in file order from 1.
    pub number: usize,
    /// The `component` field as written.
    pub component: String,
    /// Which components it applies to.
    pub matcher: ComponentMatcher,
    /// Capability interfaces granted.
    pub capabilities: Vec<Capability>,
    /// Process scope and the operations allowed on it.
    pub process: ProcessScope,
    /// Cgroup subtrees.
    pub cgroup: Vec<CgroupPath>,
    /// Network scope.
    pub network: NetworkScope,
    /// Where a probe may connect.
    pub outbound: OutboundScope,
    /// Programs a probe may run.
    pub command: Vec<ProgramRule>,
    /// Directories faults may fill and load, and the free space they must leave.
    pub filesystem: FilesystemScope,
}

impl Grant {
    /// How denials name it: `grant 1 (process-pause@^0.1)`.
    pub fn rule(&self) -> String {
        format!("grant {} ({})", self.number, self.component)
    }
}

/// The operator's policy, every value compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Grants, in file order.
    pub grants: Vec<Grant>,
}

/// The policy file as TOML spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, rename = "grant")]
    grants: Vec<RawGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    component: String,
    capabilities: Vec<Capability>,
    #[serde(default)]
    process: scope::RawProcess,
    #[serde(default)]
    cgroup: scope::RawCgroup,
    #[serde(default)]
    network: scope::RawNetwork,
    #[serde(default)]
    outbound: scope::RawOutbound,
    #[serde(default)]
    filesystem: scope::RawFilesystem,
    #[serde(default)]
    command: scope::RawCommand,
}

impl RawGrant {
    fn compile(&self, number: usize) -> Result<Grant, PolicyError> {
        let located = |l: scope::Located| PolicyError::Value {
            grant: number,
            field: l.field,
            problem: l.problem,
        };
        let matcher =
            ComponentMatcher::parse(&self.component).map_err(|problem| PolicyError::Value {
                grant: number,
                field: "component".to_string(),
                problem,
            })?;
        let mut capabilities = self.capabilities.clone();
        capabilities.sort();
        capabilities.dedup();
        Ok(Grant {
            number,
            component: self.component.clone(),
            matcher,
            capabilities,
            process: self.process.compile().map_err(located)?,
            cgroup: self.cgroup.compile().map_err(located)?,
            network: self.network.compile().map_err(located)?,
            outbound: self.outbound.compile().map_err(located)?,
            filesystem: self.filesystem.compile().map_err(located)?,
            command: self.command.compile().map_err(located)?,
        })
    }
}

/// Where a component came from: the only thing grants are matched against. What a component
/// says of itself in `describe()` never enters here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// The hub release it was resolved to, when it came through a hub whose index verified under
    /// the configured trust; `None` for a local file, which has its digest and nothing else.
    pub origin: Option<Origin>,
}

/// A verified hub release.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The hub's id (from its verified index).
    pub hub: String,
    /// The package name in that index.
    pub name: String,
    /// The release version in that index.
    pub version: semver::Version,
}

impl Identity {
    /// A local file: known by its digest alone.
    pub fn local(digest: &str) -> Identity {
        Identity {
            digest: digest.to_string(),
            origin: None,
        }
    }

    /// A release resolved through a verified hub.
    pub fn from_hub(hub: &str, name: &str, version: semver::Version, digest: &str) -> Identity {
        Identity {
            digest: digest.to_string(),
            origin: Some(Origin {
                hub: hub.to_string(),
                name: name.to_string(),
                version,
            }),
        }
    }

    /// `name@version` for a hub release, else the digest (shortened) and "local file".
    pub fn label(&self) -> String {
        match &self.origin {
            Some(o) => format!("{}@{}", o.name, o.version),
            None => format!(
                "local file {}",
                self.digest.chars().take(19).collect::<String>()
            ),
        }
    }
}

impl Policy {
    /// Parses a policy from TOML text, compiling every value in it.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| PolicyError::Syntax(e.to_string().trim().to_string()))?;
        let grants = raw
            .grants
            .iter()
            .enumerate()
            .map(|(i, g)| g.compile(i + 1))
            .collect::<Result<_, _>>()?;
        Ok(Policy { grants })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy> {
        // Bounded, and never blocking on a FIFO: a policy is a small text file.
        let bytes = crate::component::read_bounded(path, 1 << 20, "policy")
            .with_context(|| format!("failed to read policy {}", path.display()))?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("policy {} is not UTF-8", path.display()))?;
        Policy::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The grants that apply to a component, merged.
    pub fn grants_for(&self, who: &Identity) -> Grants {
        // Logging and undoing one's own changes touch nothing: every component has them.
        let mut merged = Grants {
            component: who.label(),
            capabilities: vec![Capability::Log, Capability::Rollback],
            ..Grants::default()
        };
        for g in self.grants.iter().filter(|g| g.matcher.matches(who)) {
            let rule = g.rule();
            for c in &g.capabilities {
                if !merged.capabilities.contains(c) {
                    merged.capabilities.push(*c);
                }
            }
            merged.rules.push(rule.clone());
            merged.process.push(Scoped {
                rule: rule.clone(),
                scope: g.process.clone(),
            });
            merged.cgroup.extend(g.cgroup.iter().cloned());
            merged.network.push(Scoped {
                rule: rule.clone(),
                scope: g.network.clone(),
            });
            merged.command.extend(g.command.iter().map(|p| Scoped {
                rule: g.rule(),
                scope: p.clone(),
            }));
            if !g.outbound.is_empty() {
                merged.outbound.push(Scoped {
                    rule: rule.clone(),
                    scope: g.outbound.clone(),
                });
            }
            if !g.filesystem.directories.is_empty() {
                merged.filesystem.push(Scoped {
                    rule,
                    scope: g.filesystem.clone(),
                });
            }
        }
        merged.capabilities.sort();
        merged
    }
}

/// A scope with the grant it came from, for denial messages.
#[derive(Debug, Clone)]
pub struct Scoped<T> {
    /// `grant 1 (process-pause@^0.1)`.
    pub rule: String,
    /// The grant's scope.
    pub scope: T,
}

/// Everything granted to one component, compiled: a call compares, never parses.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Who it is, for messages.
    pub component: String,
    /// The grants that matched, for messages.
    pub rules: Vec<String>,
    /// Capability interfaces granted (the union over the matching grants).
    pub capabilities: Vec<Capability>,
    /// Each matching grant's process scope and operations. A process is in scope when any of
    /// them covers it; an operation on it is allowed when a grant that covers it allows it.
    pub process: Vec<Scoped<ProcessScope>>,
    /// Cgroup subtrees (the union over the matching grants).
    pub cgroup: Vec<CgroupPath>,
    /// Each matching grant's network scope; a call must fit one of them entirely.
    pub network: Vec<Scoped<NetworkScope>>,
    /// Each matching grant's outbound scope; a connection must fit one of them.
    pub outbound: Vec<Scoped<OutboundScope>>,
    /// Programs a probe may run, each with its grant (the union over the matching grants).
    pub command: Vec<Scoped<ProgramRule>>,
    /// Each matching grant's filesystem scope (grants without directories left out). A
    /// directory is in scope when one of them covers it; a fill keeps the largest reserve of
    /// the grants that cover its directory.
    pub filesystem: Vec<Scoped<FilesystemScope>>,
}

impl Grants {
    /// Grants every capability with no scope at all: for tests of the load checks only.
    pub fn capabilities_only(component: &str, capabilities: &[Capability]) -> Grants {
        Grants {
            component: component.to_string(),
            capabilities: capabilities.to_vec(),
            ..Grants::default()
        }
    }

    /// Whether an interface is granted.
    pub fn allows(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Names the rules that were consulted, for a denial message.
    pub fn rules_text(&self) -> String {
        if self.rules.is_empty() {
            format!("no grant in the policy matches {}", self.component)
        } else {
            self.rules.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, version: &str) -> Identity {
        Identity::from_hub(
            "test",
            name,
            version.parse().unwrap(),
            &format!("sha256:{}", "a".repeat(64)),
        )
    }

    #[test]
    fn grants_match_by_name_range_and_digest() {
        let p = Policy::parse(&format!(
            r#"
            [[grant]]
            component = "pause@^0.1"
            capabilities = ["process"]
            process = {{ names = ["sleep"] }}
            [[grant]]
            component = "sha256:{}"
            capabilities = ["log"]
            "#,
            "a".repeat(64)
        ))
        .unwrap();
        let always = [Capability::Log, Capability::Rollback];
        let g = p.grants_for(&who("pause", "0.1.3"));
        assert_eq!(
            g.capabilities,
            [&always[..], &[Capability::Process]].concat()
        );
        let g = p.grants_for(&who("pause", "1.0.0"));
        assert_eq!(g.capabilities, always);
        let mut other = who("kill", "0.1.0");
        other.digest = "sha256:00".into();
        assert_eq!(p.grants_for(&other).capabilities, always);
        assert!(p.grants_for(&other).rules_text().contains("no grant"));
        // A local file that calls itself `pause` gets no name grant, but its digest still counts.
        let forged = Identity::local(&format!("sha256:{}", "a".repeat(64)));
        let g = p.grants_for(&forged);
        assert_eq!(g.capabilities, always);
        assert_eq!(g.rules.len(), 1);
        assert!(g.rules[0].starts_with("grant 2 "), "{:?}", g.rules);
        let forged_other = Identity::local("sha256:00");
        assert_eq!(p.grants_for(&forged_other).rules, Vec::<String>::new());
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let e =
            Policy::parse("[[grant]]\ncomponent = \"x\"\ncapabilities = [\"disk\"]").unwrap_err();
        assert!(format!("{e:#}").contains("disk"), "{e:#}");
        let e = Policy::parse(
            "[[grant]]\ncomponent = \"x\"\ncapabilities = []\nprocess = { cmdlines = [\"(\"] }",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("cmdline"), "{e:#}");
        let e = Policy::parse(
            "[[grant]]\ncomponent = \"x\"\ncapabilities = []\ncgroup = { subtrees = [\"/a/../b\"] }",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains(".."), "{e:#}");
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../../docs/policy.example.toml");
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.grants.len(), 6);
    }

    /// `text` as grant 2 of a policy whose grant 1 is fine.
    fn second_grant(text: &str) -> String {
        let policy = format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = []\n[[grant]]\ncomponent = \"x\"\ncapabilities = [\"process\"]\n{text}\n"
        );
        Policy::parse(&policy).unwrap_err().to_string()
    }

    #[test]
    fn every_bad_value_is_an_error_naming_grant_field_and_value() {
        let cases = [
            (
                r#"network = { destinations = ["10.0.0.0/8", "10.0.0.0/33"] }"#,
                r#"grant 2: network.destinations[1]: "10.0.0.0/33" is not a CIDR"#,
            ),
            (
                r#"network = { destinations = ["nonsense"] }"#,
                r#"grant 2: network.destinations[0]: "nonsense" is not a CIDR"#,
            ),
            (
                r#"network = { destinations = [] }"#,
                "grant 2: network.destinations: an empty list is ambiguous",
            ),
            (
                r#"network = { ports = ["80", "90-85"] }"#,
                r#"grant 2: network.ports[1]: "90-85" is reversed"#,
            ),
            (
                r#"network = { ports = ["http"] }"#,
                r#"grant 2: network.ports[0]: "http" is not a port or a range of ports"#,
            ),
            (
                r#"network = { ports = [70000] }"#,
                "grant 2: network.ports[0]: 70000 is not a port",
            ),
            (
                r#"network = { ports = [] }"#,
                "grant 2: network.ports: an empty list is ambiguous",
            ),
            (
                r#"network = { namespaces = ["host", "elsewhere"] }"#,
                r#"grant 2: network.namespaces[1]: "elsewhere" is not `host`, `pid` or `named:<glob>`"#,
            ),
            (
                r#"network = { namespaces = ["named:"] }"#,
                r#"grant 2: network.namespaces[0]: "named:" is not"#,
            ),
            (
                r#"network = { namespaces = ["named:app-[x"] }"#,
                r#"grant 2: network.namespaces[0]: "app-[x" is not a glob"#,
            ),
            (
                r#"network = { interfaces = ["eth0", "veth{a"] }"#,
                r#"grant 2: network.interfaces[1]: "veth{a" is not a glob"#,
            ),
            (
                r#"process = { cmdlines = ["("] }"#,
                r#"grant 2: process.cmdlines[0]: "(" is not a regex"#,
            ),
            (
                r#"process = { signals = ["stop", "SIGKILL"] }"#,
                r#"grant 2: process.signals[1]: "SIGKILL" is not a signal (one of hup, int, quit, kill, usr1, usr2, term, cont, stop)"#,
            ),
            (
                r#"process = { stress = ["disk"] }"#,
                r#"grant 2: process.stress[0]: "disk" is not a stress kind (one of cpu, memory, io)"#,
            ),
            (
                r#"process = { cgroups = ["system.slice"] }"#,
                r#"grant 2: process.cgroups[0]: "system.slice" is not an absolute cgroup path"#,
            ),
            (
                r#"cgroup = { subtrees = ["/a", "/a/../b"] }"#,
                r#"grant 2: cgroup.subtrees[1]: "/a/../b" contains `..`"#,
            ),
            (
                r#"outbound = { destinations = ["127.0.0.1"], hosts = ["127.0.0.1:8080"] }"#,
                r#"grant 2: outbound.hosts[0]: "127.0.0.1:8080" is not a host-name glob: addresses go in `outbound.destinations`"#,
            ),
            (
                r#"outbound = { destinations = ["localhost"] }"#,
                r#"grant 2: outbound.destinations[0]: "localhost" is not a CIDR or an address (names go in `outbound.hosts`)"#,
            ),
            (
                r#"outbound = { hosts = ["localhost"] }"#,
                "grant 2: outbound.destinations: no destination is listed, so nothing is reachable",
            ),
            (
                r#"outbound = { destinations = ["::1"], ports = [] }"#,
                "grant 2: outbound.ports: an empty list is ambiguous",
            ),
            (
                r#"outbound = { destinations = ["::1"], hosts = ["a[b"] }"#,
                r#"grant 2: outbound.hosts[0]: "a[b" is not a glob"#,
            ),
            (
                r#"command = { programs = ["/bin/true", "pg_isready"] }"#,
                r#"grant 2: command.programs[1]: "pg_isready" is not an absolute path"#,
            ),
            (
                r#"command = { programs = ["/usr/bin/../bin/sh"] }"#,
                r#"grant 2: command.programs[0]: "/usr/bin/../bin/sh" contains `..`"#,
            ),
            (
                r#"command = { programs = ["/usr//bin/true"] }"#,
                r#"grant 2: command.programs[0]: "/usr//bin/true" has an empty component"#,
            ),
            (
                r#"command = { programs = ["/usr/bin/"] }"#,
                r#"grant 2: command.programs[0]: "/usr/bin/" has an empty component"#,
            ),
            (
                r#"command = { programs = [{ path = "/usr/bin/x", args = ["ok", "[z-a]"] }] }"#,
                r#"grant 2: command.programs[0].args[1]: "[z-a]" is not a glob"#,
            ),
        ];
        for (grant, expected) in cases {
            let e = second_grant(grant);
            assert!(
                e.starts_with(expected),
                "{grant}\n got: {e}\nwant: {expected}"
            );
        }
        let e = Policy::parse("[[grant]]\ncomponent = \"sha256:12\"\ncapabilities = []")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"grant 1: component: "sha256:12" is not sha256:<64 hex digits>"#
        );
        let e = Policy::parse("[[grant]]\ncomponent = \"x@not-a-range\"\ncapabilities = []")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(r#"grant 1: component: "not-a-range" is not a semver range"#),
            "{e}"
        );
        let e = Policy::parse(
            "[[grant]]\ncomponent = \"x\"\ncapabilities = []\nprocess = { signal = [] }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid policy: ") && e.contains("signal"),
            "{e}"
        );
    }

    #[test]
    fn filesystem_grants_are_checked_against_the_live_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::fs::write(real.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(real.join("d"), real.join("link")).unwrap();
        let grant = |fields: &str| {
            Policy::parse(&format!(
                "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ {fields} }}\n"
            ))
        };
        let r = real.display();
        let p = grant(&format!("directories = [\"{r}/d/\", \"{r}//d\"]")).unwrap();
        let fs = &p.grants[0].filesystem;
        assert_eq!(fs.directories.len(), 1);
        assert_eq!(fs.directories[0].path(), real.join("d"));
        assert_eq!(fs.reserve, Reserve::DEFAULT);
        assert!(fs.directories[0].relative(&real.join("d/x/y")).is_some());
        assert!(fs.directories[0].relative(&real.join("dx")).is_none());
        let reserve = |text: &str| grant(&format!("directories = [\"{r}\"], reserve = {text}"));
        assert_eq!(
            reserve("\"10%\"").unwrap().grants[0].filesystem.reserve,
            Reserve::Percent(10.0)
        );
        assert_eq!(
            reserve("\"1GiB\"").unwrap().grants[0].filesystem.reserve,
            Reserve::Bytes(1 << 30)
        );
        assert_eq!(
            reserve("\"500MiB\"").unwrap().grants[0].filesystem.reserve,
            Reserve::Bytes(500 << 20)
        );
        assert_eq!(
            reserve("4096").unwrap().grants[0].filesystem.reserve,
            Reserve::Bytes(4096)
        );
        assert_eq!(Reserve::Percent(10.0).bytes(1000), 100);
        assert_eq!(Reserve::Percent(5.0).bytes(1001), 51);
        let cases = [
            (
                "directories = [\"/\"]".to_string(),
                "filesystem.directories[0]: \"/\" is the root".to_string(),
            ),
            (
                "directories = [\"/proc/sys\"]".to_string(),
                "filesystem.directories[0]: \"/proc/sys\" is inside /proc".to_string(),
            ),
            (
                "directories = [\"/dev\"]".to_string(),
                "filesystem.directories[0]: \"/dev\" is inside /dev".to_string(),
            ),
            (
                "directories = [\"tmp\"]".to_string(),
                "filesystem.directories[0]: \"tmp\" is not an absolute path".to_string(),
            ),
            (
                format!("directories = [\"{r}/d/../f\"]"),
                format!("filesystem.directories[0]: \"{r}/d/../f\" contains `..`"),
            ),
            (
                format!("directories = [\"{r}/f\"]"),
                format!("filesystem.directories[0]: \"{r}/f\" is not a directory"),
            ),
            (
                format!("directories = [\"{r}/link\"]"),
                format!("filesystem.directories[0]: \"{r}/link\" is a symlink"),
            ),
            (
                format!("directories = [\"{r}/link/\"]"),
                format!("filesystem.directories[0]: \"{r}/link/\" is a symlink"),
            ),
            (
                format!("directories = [\"{r}/gone\"]"),
                format!("filesystem.directories[0]: \"{r}/gone\" cannot be read"),
            ),
            (
                format!("directories = [\"{r}\"], reserve = \"lots\""),
                "filesystem.reserve: \"lots\" is not a size".to_string(),
            ),
            (
                format!("directories = [\"{r}\"], reserve = \"101%\""),
                "filesystem.reserve: \"101%\" is not a percentage from 0% to 100%".to_string(),
            ),
            (
                format!("directories = [\"{r}\"], reserve = -1"),
                "filesystem.reserve: -1 is not a number of bytes".to_string(),
            ),
        ];
        for (fields, expected) in cases {
            let e = grant(&fields).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("grant 1: {expected}")),
                "{fields}\n got: {e}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn command_rules_fix_the_path_and_optionally_each_argument() {
        let p = Policy::parse(
            r#"
            [[grant]]
            component = "*"
            capabilities = ["command"]
            command = { programs = ["/usr/bin/true", { path = "/usr/bin/pg_isready", args = ["-h", "127.0.0.*", "-p", "5432"] }] }
            "#,
        )
        .unwrap();
        let rules = &p.grants[0].command;
        assert_eq!(rules[0].path, "/usr/bin/true");
        assert!(rules[0].refuses(&vec!["anything".to_string(); 3]).is_none());
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            rules[1]
                .refuses(&args(&["-h", "127.0.0.1", "-p", "5432"]))
                .is_none()
        );
        assert_eq!(
            rules[1]
                .refuses(&args(&["-h", "10.0.0.1", "-p", "5432"]))
                .unwrap(),
            r#"argument 1 "10.0.0.1" does not match "127.0.0.*""#
        );
        assert!(
            rules[1]
                .refuses(&args(&["-h", "127.0.0.1"]))
                .unwrap()
                .contains("exactly 4 argument(s) here, 2 given")
        );
        assert_eq!(
            rules[1].text(),
            r#"{ path = "/usr/bin/pg_isready", args = ["-h", "127.0.0.*", "-p", "5432"] }"#
        );
        let g = p.grants_for(&Identity::local("sha256:00"));
        assert_eq!(g.command.len(), 2);
        assert_eq!(g.command[0].rule, "grant 1 (*)");
    }

    #[test]
    fn values_are_compiled_once_into_types() {
        let p = Policy::parse(
            r#"
            [[grant]]
            component = "*"
            capabilities = ["network", "process", "cgroup", "outbound"]
            process = { names = ["nginx"], signals = ["stop", "cont", "stop"], stress = ["io"] }
            cgroup = { subtrees = ["/a//b/"] }
            network = { namespaces = ["host", "named:flt-*"], interfaces = ["veth*1"], destinations = ["10.1.2.3/8", "::1"], ports = [53, "8000-8100"] }
            outbound = { destinations = ["10.0.0.0/8", "::ffff:127.0.0.1"], ports = [443, "8000-8100"], hosts = ["*.example.org", "localhost"] }
            "#,
        )
        .unwrap();
        let g = &p.grants[0];
        assert_eq!(g.process.signals, [SignalName::Cont, SignalName::Stop]);
        assert_eq!(g.process.stress, [StressKind::Io]);
        assert_eq!(g.cgroup[0].as_str(), "/a/b");
        assert!(g.cgroup[0].contains("/a/b/c") && !g.cgroup[0].contains("/a/bc"));
        let n = &g.network;
        assert!(n.host && !n.pid);
        assert!(n.named.is_match("flt-a-1") && !n.named.is_match("prod"));
        assert!(n.interfaces.is_match("veth-x-1") && !n.interfaces.is_match("eth0"));
        let d = n.destinations.as_ref().unwrap();
        assert_eq!(d[0].to_string(), "10.0.0.0/8");
        assert_eq!(d[1].to_string(), "::1/128");
        assert!(d[0].contains(&scope::parse_net("10.1.2.0/24").unwrap()));
        assert!(!d[0].contains(&scope::parse_net("0.0.0.0/0").unwrap()));
        let ports = n.ports.as_ref().unwrap();
        assert_eq!(
            ports[0],
            PortRange {
                first: 53,
                last: 53
            }
        );
        assert!(ports[1].covers(8000, 8050) && !ports[1].covers(7999, 8000));
        let o = &g.outbound;
        let at = |a: &str| a.parse::<std::net::SocketAddr>().unwrap();
        assert!(o.allows(Some("api.example.org"), at("10.1.2.3:443")));
        assert!(o.allows(Some("API.example.org"), at("10.1.2.3:8050")));
        assert!(!o.allows(Some("api.example.org"), at("10.1.2.3:80")));
        assert!(!o.allows(Some("evil.org"), at("10.1.2.3:443")));
        // A granted name resolving outside the destinations is denied: no rebinding.
        assert!(!o.allows(Some("localhost"), at("192.168.1.1:443")));
        // Mapped addresses are judged as the IPv4 address they are.
        assert!(o.allows(None, at("127.0.0.1:443")));
        assert!(o.allows(None, at("[::ffff:10.0.0.1]:443")));
        assert!(!o.allows(None, at("[::1]:443")));
        // An omitted list allows any destination and any port; that is different from a list.
        let open = Policy::parse(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = []\nnetwork = { interfaces = [\"lo\"] }",
        )
        .unwrap();
        assert!(open.grants[0].network.destinations.is_none());
        assert!(open.grants[0].network.ports.is_none());
        assert!(open.grants[0].process.signals.is_empty());
    }
}
