//! The operator's policy: which capabilities each component may use, and on what. Deny by
//! default: a component gets nothing no grant names.
//!
//! ```toml
//! [[grant]]
//! component = "process-pause@^0.1"     # a hub name, name@semver-range, or sha256:<hex>
//! capabilities = ["log", "rollback", "process"]
//! process = { names = ["nginx"], cmdlines = ["^/usr/bin/java .*app.jar"], pids = [], users = [] }
//! cgroup = { subtrees = ["/system.slice/nginx.service"] }
//! network = { namespaces = ["host", "pid", "named:app-*"], interfaces = ["eth0"], destinations = ["10.0.0.0/8"], ports = ["80", "8000-8100"] }
//! outbound = { hosts = ["127.0.0.1:8080"] }
//! ```
//!
//! Whatever the policy says, pid 1, the agent and its ancestors are never in scope (the process
//! capability enforces that).

use anyhow::{Context as _, Result, bail};
use regex::Regex;
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
    /// `outbound`: TCP and HTTP for probes.
    Outbound,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 6] = [
        Capability::Log,
        Capability::Rollback,
        Capability::Process,
        Capability::Cgroup,
        Capability::Network,
        Capability::Outbound,
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
        }
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

/// Processes a grant may touch. A process is in scope when it matches any listed criterion.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessScope {
    /// Exact process ids.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Exact process names (`/proc/<pid>/comm`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Regexes over the command line (arguments joined by spaces).
    #[serde(default)]
    pub cmdlines: Vec<String>,
    /// User ids.
    #[serde(default)]
    pub users: Vec<u32>,
    /// Cgroup paths: processes inside these subtrees.
    #[serde(default)]
    pub cgroups: Vec<String>,
}

/// Cgroups a grant may change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupScope {
    /// Subtrees, as paths relative to the hierarchy root (`/system.slice/x.service`).
    #[serde(default)]
    pub subtrees: Vec<String>,
}

/// Traffic a grant may disturb.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkScope {
    /// `host`, `pid` (a target process's namespace) or `named:<glob>` (`*` wildcards).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Interface names (`*` wildcards).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Destination CIDRs the fault may target.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Destination ports or ranges (`80`, `8000-8100`).
    #[serde(default)]
    pub ports: Vec<String>,
}

/// Hosts a probe may reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundScope {
    /// `host:port` pairs (`*` for any port).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// One grant of the policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Which components: `name`, `name@<semver range>`, `sha256:<hex>`, or `*`.
    pub component: String,
    /// Capability interfaces granted.
    pub capabilities: Vec<Capability>,
    /// Process scope.
    #[serde(default)]
    pub process: ProcessScope,
    /// Cgroup scope.
    #[serde(default)]
    pub cgroup: CgroupScope,
    /// Network scope.
    #[serde(default)]
    pub network: NetworkScope,
    /// Outbound scope.
    #[serde(default)]
    pub outbound: OutboundScope,
}

/// The operator's policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Grants, in file order.
    #[serde(default, rename = "grant")]
    pub grants: Vec<Grant>,
}

/// Where a component came from: the only thing grants are matched against. What a component
/// says of itself in `describe()` never enters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// The hub release it was resolved to, when it came through a hub whose index verified under
    /// the configured trust; `None` for a local file, which has its digest and nothing else.
    pub origin: Option<Origin>,
}

/// A verified hub release.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Parses a policy from TOML text, checking every pattern in it.
    pub fn parse(text: &str) -> Result<Policy> {
        let policy: Policy = toml::from_str(text).context("invalid policy")?;
        for (i, g) in policy.grants.iter().enumerate() {
            let n = i + 1;
            component_matcher(&g.component).with_context(|| format!("grant {n}: bad component"))?;
            for re in &g.process.cmdlines {
                Regex::new(re).with_context(|| format!("grant {n}: bad cmdline regex {re:?}"))?;
            }
            for cidr in &g.network.destinations {
                parse_cidr(cidr).with_context(|| format!("grant {n}: bad destination"))?;
            }
            for p in &g.network.ports {
                parse_port_range(p).with_context(|| format!("grant {n}: bad port"))?;
            }
            for ns in &g.network.namespaces {
                if !(ns == "host" || ns == "pid" || ns.starts_with("named:")) {
                    bail!("grant {n}: namespace {ns:?} is not `host`, `pid` or `named:<glob>`");
                }
            }
            for s in g.cgroup.subtrees.iter().chain(&g.process.cgroups) {
                if !s.starts_with('/') || s.split('/').any(|c| c == "..") {
                    bail!("grant {n}: cgroup {s:?} must be an absolute path without `..`");
                }
            }
        }
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read policy {}", path.display()))?;
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
        for (i, g) in self.grants.iter().enumerate() {
            let matches = component_matcher(&g.component).is_ok_and(|m| m.matches(who));
            if !matches {
                continue;
            }
            let rule = format!("grant {} ({})", i + 1, g.component);
            for c in &g.capabilities {
                if !merged.capabilities.contains(c) {
                    merged.capabilities.push(*c);
                }
            }
            merged.rules.push(rule);
            // Checked by `Policy::parse`, so every pattern compiles.
            merged.cmdline_patterns.extend(
                g.process
                    .cmdlines
                    .iter()
                    .filter_map(|re| Regex::new(re).ok()),
            );
            merged.process.push(g.process.clone());
            merged.cgroup.extend(g.cgroup.subtrees.iter().cloned());
            merged.network.push(g.network.clone());
            merged.outbound.extend(g.outbound.hosts.iter().cloned());
        }
        merged.capabilities.sort();
        merged
    }
}

/// Everything granted to one component.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Who it is, for messages.
    pub component: String,
    /// The grants that matched, for messages.
    pub rules: Vec<String>,
    /// Capability interfaces granted.
    pub capabilities: Vec<Capability>,
    /// Process scopes (a process in any of them is in scope).
    pub process: Vec<ProcessScope>,
    /// Every scope's cmdline patterns, compiled once (a match in any scope puts a process in
    /// scope).
    pub cmdline_patterns: Vec<Regex>,
    /// Cgroup subtrees.
    pub cgroup: Vec<String>,
    /// Network scopes.
    pub network: Vec<NetworkScope>,
    /// Outbound hosts.
    pub outbound: Vec<String>,
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

enum ComponentMatcher {
    Any,
    Digest(String),
    Name(String, Option<semver::VersionReq>),
}

impl ComponentMatcher {
    fn matches(&self, who: &Identity) -> bool {
        match self {
            ComponentMatcher::Any => true,
            ComponentMatcher::Digest(d) => d.eq_ignore_ascii_case(&who.digest),
            // Names and versions are only known for verified hub releases: a local file
            // matches digest grants (and `*`) only, whatever it calls itself.
            ComponentMatcher::Name(n, req) => who.origin.as_ref().is_some_and(|o| {
                n == &o.name && req.as_ref().is_none_or(|r| r.matches(&o.version))
            }),
        }
    }
}

fn component_matcher(spec: &str) -> Result<ComponentMatcher> {
    if spec == "*" {
        return Ok(ComponentMatcher::Any);
    }
    if let Some(hex) = spec.strip_prefix("sha256:") {
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{spec:?} is not sha256:<64 hex digits>");
        }
        return Ok(ComponentMatcher::Digest(spec.to_string()));
    }
    match spec.split_once('@') {
        Some((name, req)) => {
            let req = semver::VersionReq::parse(req)
                .with_context(|| format!("{req:?} is not a semver range"))?;
            Ok(ComponentMatcher::Name(name.to_string(), Some(req)))
        }
        None => Ok(ComponentMatcher::Name(spec.to_string(), None)),
    }
}

/// A CIDR: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: std::net::IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        if other.prefix < self.prefix {
            return false;
        }
        match (self.addr, other.addr) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address.
pub fn parse_cidr(text: &str) -> Result<Cidr> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .with_context(|| format!("{text:?} is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .with_context(|| format!("{text:?} has a bad prefix length"))?,
        None => max,
    };
    Ok(Cidr { addr, prefix })
}

/// Parses `80` or `8000-8100`.
pub fn parse_port_range(text: &str) -> Result<(u16, u16)> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("bad port {text:?}"))?;
    let b: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("bad port {text:?}"))?;
    if a > b {
        bail!("port range {text:?} is reversed");
    }
    Ok((a, b))
}

/// Matches `text` against a glob with `*` wildcards.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
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
        let text = include_str!("../../docs/policy.example.toml");
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.grants.len(), 4);
    }

    #[test]
    fn cidrs_and_globs() {
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains(&parse_cidr("10.1.2.0/24").unwrap()));
        assert!(!net.contains(&parse_cidr("11.0.0.1").unwrap()));
        assert!(!net.contains(&parse_cidr("0.0.0.0/0").unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(glob_match("flt-*", "flt-a-1"));
        assert!(!glob_match("flt-*", "prod"));
        assert!(glob_match("veth*1", "veth-x-1"));
    }
}
