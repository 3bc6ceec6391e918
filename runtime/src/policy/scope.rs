//! The typed values of a grant's scopes, compiled once when the policy is read: regexes,
//! `globset` matchers, `ipnet` networks, inclusive port ranges and validated cgroup paths. A call
//! only compares; it never parses a policy string again.

use crate::capability::process::linux::ProcInfo;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use regex::Regex;
use serde::Serialize;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A signal a process grant may allow, named as in the contract's `signal` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalName {
    /// SIGHUP.
    Hup,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGKILL.
    Kill,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM.
    Term,
    /// SIGCONT.
    Cont,
    /// SIGSTOP.
    Stop,
}

impl SignalName {
    /// Every signal, in the contract's order.
    pub const ALL: [SignalName; 9] = [
        SignalName::Hup,
        SignalName::Int,
        SignalName::Quit,
        SignalName::Kill,
        SignalName::Usr1,
        SignalName::Usr2,
        SignalName::Term,
        SignalName::Cont,
        SignalName::Stop,
    ];

    /// The name a policy uses (`stop`).
    pub fn name(self) -> &'static str {
        match self {
            SignalName::Hup => "hup",
            SignalName::Int => "int",
            SignalName::Quit => "quit",
            SignalName::Kill => "kill",
            SignalName::Usr1 => "usr1",
            SignalName::Usr2 => "usr2",
            SignalName::Term => "term",
            SignalName::Cont => "cont",
            SignalName::Stop => "stop",
        }
    }

    fn parse(text: &str) -> Result<SignalName, String> {
        SignalName::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = SignalName::ALL.iter().map(|s| s.name()).collect();
                format!("{text:?} is not a signal (one of {})", names.join(", "))
            })
    }
}

impl fmt::Display for SignalName {
    /// `SIGSTOP`, as people know it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name().to_ascii_uppercase())
    }
}

/// A kind of stress worker a process grant may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StressKind {
    /// CPU burners.
    Cpu,
    /// Memory holders.
    Memory,
    /// Write-and-fsync loops.
    Io,
}

impl StressKind {
    /// Every kind.
    pub const ALL: [StressKind; 3] = [StressKind::Cpu, StressKind::Memory, StressKind::Io];

    /// The name a policy uses (`cpu`).
    pub fn name(self) -> &'static str {
        match self {
            StressKind::Cpu => "cpu",
            StressKind::Memory => "memory",
            StressKind::Io => "io",
        }
    }

    fn parse(text: &str) -> Result<StressKind, String> {
        StressKind::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("{text:?} is not a stress kind (one of cpu, memory, io)"))
    }
}

impl fmt::Display for StressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cgroup path relative to the hierarchy root, in canonical form (`/a/b`, the root is `/`):
/// absolute, without `.`, `..` or NUL, so it can never name something outside itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CgroupPath(String);

impl CgroupPath {
    /// Validates and canonicalises `text`.
    pub fn parse(text: &str) -> Result<CgroupPath, String> {
        if text.contains('\0') {
            return Err(format!("{text:?} contains a NUL byte"));
        }
        if !text.starts_with('/') {
            return Err(format!(
                "{text:?} is not an absolute cgroup path (it starts at the hierarchy root, `/`)"
            ));
        }
        let mut parts = Vec::new();
        for part in text.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(format!("{text:?} contains `{part}`"));
            }
            parts.push(part);
        }
        Ok(CgroupPath(format!("/{}", parts.join("/"))))
    }

    /// The canonical path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether canonical `path` is this cgroup or lies below it.
    pub fn contains(&self, path: &str) -> bool {
        self.0 == "/"
            || path == self.0
            || path
                .strip_prefix(self.0.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl AsRef<str> for CgroupPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Glob patterns (`*`, `?`, `[abc]`, `{a,b}`) compiled into one matcher.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether no pattern is listed (then nothing matches).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern matches `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.set.is_match(text)
    }
}

/// Builds a [`Globs`] from `(field, pattern)` pairs; the error names the field.
fn globs<'a>(items: impl IntoIterator<Item = (String, &'a str)>) -> Result<Globs, Located> {
    let mut builder = GlobSetBuilder::new();
    let mut patterns = Vec::new();
    for (field, pattern) in items {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Located::new(field, format!("{pattern:?} is not a glob: {}", e.kind())))?;
        builder.add(glob);
        patterns.push(pattern.to_string());
    }
    let set = builder
        .build()
        .map_err(|e| Located::new("globs".to_string(), e.to_string()))?;
    Ok(Globs { patterns, set })
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for one port).
    pub last: u16,
}

impl PortRange {
    /// Whether `first..=last` lies inside this range.
    pub fn covers(&self, first: u16, last: u16) -> bool {
        self.first <= first && last <= self.last
    }

    fn parse(text: &str) -> Result<PortRange, String> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let port = |s: &str| {
            s.trim().parse::<u16>().map_err(|_| {
                format!("{text:?} is not a port or a range of ports (`80`, `8000-8100`)")
            })
        };
        let (first, last) = (port(a)?, port(b)?);
        if first > last {
            return Err(format!("{text:?} is reversed"));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host), host bits cleared.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    match text.parse::<IpNet>() {
        Ok(net) => Some(net.trunc()),
        Err(_) => text.parse::<std::net::IpAddr>().ok().map(IpNet::from),
    }
}

/// Which processes a grant covers and what it may do to them. A process is covered when it
/// matches any criterion (pid OR name OR cmdline OR user OR cgroup).
#[derive(Debug, Clone, Default)]
pub struct ProcessScope {
    /// Exact process ids.
    pub pids: Vec<u32>,
    /// Exact process names (`/proc/<pid>/comm`).
    pub names: Vec<String>,
    /// Regexes over the command line (arguments joined by spaces), compiled.
    pub cmdlines: Vec<Regex>,
    /// Real user ids.
    pub users: Vec<u32>,
    /// Cgroup subtrees: processes inside them.
    pub cgroups: Vec<CgroupPath>,
    /// Signals that may be sent to a covered process; none when empty.
    pub signals: Vec<SignalName>,
    /// Stress worker kinds that may be started; none when empty.
    pub stress: Vec<StressKind>,
}

/// Which criterion of a process scope put a process in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "criterion", content = "value", rename_all = "lowercase")]
pub enum Criterion {
    /// Its pid is listed.
    Pid(u32),
    /// Its name is listed.
    Name(String),
    /// Its command line matches this regex.
    Cmdline(String),
    /// Its user id is listed.
    User(u32),
    /// It sits in this cgroup subtree.
    Cgroup(String),
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criterion::Pid(p) => write!(f, "pids = [{p}]"),
            Criterion::Name(n) => write!(f, "names = [{n:?}]"),
            Criterion::Cmdline(re) => write!(f, "cmdlines = [{re:?}]"),
            Criterion::User(u) => write!(f, "users = [{u}]"),
            Criterion::Cgroup(c) => write!(f, "cgroups = [{c:?}]"),
        }
    }
}

impl ProcessScope {
    /// Whether no criterion is listed (then no process is covered).
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.names.is_empty()
            && self.cmdlines.is_empty()
            && self.users.is_empty()
            && self.cgroups.is_empty()
    }

    /// The first criterion that covers `p`, or `None`. A process without a command line (a
    /// kernel thread, a zombie) never matches a cmdline pattern, even `.*`.
    pub fn matches(&self, p: &ProcInfo) -> Option<Criterion> {
        if self.pids.contains(&p.pid) {
            return Some(Criterion::Pid(p.pid));
        }
        if let Some(n) = self.names.iter().find(|n| **n == p.name) {
            return Some(Criterion::Name(n.clone()));
        }
        if !p.cmdline.is_empty() {
            let joined = p.cmdline.join(" ");
            if let Some(re) = self.cmdlines.iter().find(|re| re.is_match(&joined)) {
                return Some(Criterion::Cmdline(re.as_str().to_string()));
            }
        }
        if self.users.contains(&p.uid) {
            return Some(Criterion::User(p.uid));
        }
        self.cgroups
            .iter()
            .find(|c| p.cgroups.iter().any(|pc| c.contains(pc)))
            .map(|c| Criterion::Cgroup(c.to_string()))
    }
}

/// Network namespaces, interfaces and traffic a grant may disturb. A call fits one grant when
/// its namespace AND every interface AND every destination AND every port range fit that
/// grant.
#[derive(Debug, Clone, Default)]
pub struct NetworkScope {
    /// `host`: the agent's own namespace.
    pub host: bool,
    /// `pid`: the namespace of a process in the process scope.
    pub pid: bool,
    /// `named:<glob>`: namespaces under `/run/netns` whose name matches.
    pub named: Globs,
    /// Interface names.
    pub interfaces: Globs,
    /// Destination networks; `None` (field omitted) allows any destination.
    pub destinations: Option<Vec<IpNet>>,
    /// Destination port ranges; `None` (field omitted) allows any port.
    pub ports: Option<Vec<PortRange>>,
}

/// Where a probe may connect (`outbound`): every HTTP request and TCP connect is checked against
/// the address it goes to, after any name was resolved, so a name cannot lead elsewhere. A
/// connection fits the grant when its address lies in one of `destinations` AND its port in one
/// of `ports` (omitted: any port) AND, when it was asked for by name and `hosts` is listed, that
/// name matches one of `hosts`.
#[derive(Debug, Clone, Default)]
pub struct OutboundScope {
    /// Networks connections may go to; none reachable when empty.
    pub destinations: Vec<IpNet>,
    /// Port ranges; `None` (field omitted) allows any port.
    pub ports: Option<Vec<PortRange>>,
    /// Globs over the host name in a URL or connect call; `None` (field omitted) allows any
    /// name, whose addresses are still checked.
    pub hosts: Option<Globs>,
}

impl OutboundScope {
    /// Whether a connection to `addr`, asked for as `name` (none for an address literal), fits.
    pub fn allows(&self, name: Option<&str>, addr: std::net::SocketAddr) -> bool {
        let ip = canonical_ip(addr.ip());
        self.destinations.iter().any(|n| n.contains(&ip))
            && self
                .ports
                .as_ref()
                .is_none_or(|p| p.iter().any(|r| r.covers(addr.port(), addr.port())))
            && self.name_allowed(name)
    }

    /// Whether `name` (none for an address literal) passes the `hosts` filter.
    pub fn name_allowed(&self, name: Option<&str>) -> bool {
        match (name, &self.hosts) {
            (Some(name), Some(hosts)) => hosts.is_match(&name.to_ascii_lowercase()),
            _ => true,
        }
    }

    /// Whether nothing is reachable through it.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }

    /// The scope in words, for `policy explain` and denials.
    pub fn describe(&self) -> String {
        let list = |v: Vec<String>| v.join(", ");
        let to = list(self.destinations.iter().map(|d| d.to_string()).collect());
        let ports = match &self.ports {
            None => "any port".to_string(),
            Some(p) => format!("ports {}", list(p.iter().map(|r| r.to_string()).collect())),
        };
        let names = match &self.hosts {
            None => "any name resolving there".to_string(),
            Some(h) => format!("names {}", h.patterns().join(", ")),
        };
        format!("{to} on {ports}, {names}")
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it is, since
/// connections are judged by [`canonical_ip`].
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so `::ffff:127.0.0.1` is judged as
/// `127.0.0.1`.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A program a command grant allows, named by its absolute path, and the arguments it may get.
#[derive(Debug, Clone)]
pub struct ProgramRule {
    /// The absolute path, as written (no `.`, `..`, `//` or trailing `/`): the guest must name
    /// exactly this.
    pub path: String,
    /// One glob per argument position; `None` when the grant lists no `args` (any arguments).
    pub args: Option<Vec<ArgGlob>>,
}

/// One argument glob of a [`ProgramRule`]: `*` matches any text, `/` included (arguments are
/// not paths).
#[derive(Debug, Clone)]
pub struct ArgGlob {
    /// As written.
    pub text: String,
    matcher: globset::GlobMatcher,
}

impl ArgGlob {
    /// Whether `arg` matches.
    pub fn is_match(&self, arg: &str) -> bool {
        self.matcher.is_match(arg)
    }
}

impl ProgramRule {
    /// Why `args` do not fit this rule, or `None` when they do: with `args` in the grant, the
    /// call must have exactly that many arguments, each matching the glob at its position.
    pub fn refuses(&self, args: &[String]) -> Option<String> {
        let globs = self.args.as_ref()?;
        if globs.len() != args.len() {
            return Some(format!(
                "{} takes exactly {} argument(s) here, {} given",
                self.path,
                globs.len(),
                args.len()
            ));
        }
        globs
            .iter()
            .zip(args)
            .enumerate()
            .find(|(_, (g, a))| !g.is_match(a))
            .map(|(i, (g, a))| format!("argument {i} {a:?} does not match {:?}", g.text))
    }

    /// The rule as a policy writes it, for messages.
    pub fn text(&self) -> String {
        match &self.args {
            None => format!("{:?}", self.path),
            Some(globs) => {
                let globs: Vec<String> = globs.iter().map(|g| format!("{:?}", g.text)).collect();
                format!(
                    "{{ path = {:?}, args = [{}] }}",
                    self.path,
                    globs.join(", ")
                )
            }
        }
    }
}

/// Validates a program path: absolute, no NUL, no `.` or `..`, no `//`, no trailing `/`.
fn program_path(text: &str) -> Result<String, String> {
    if text.contains('\0') {
        return Err(format!("{text:?} contains a NUL byte"));
    }
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not an absolute path"));
    }
    if text.len() > 4096 {
        return Err(format!("{text:?} is longer than 4096 bytes"));
    }
    let parts: Vec<&str> = text[1..].split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "{text:?} has an empty component (`//` or a trailing `/`): write the path as the program will be named"
        ));
    }
    if let Some(p) = parts.iter().find(|p| **p == "." || **p == "..") {
        return Err(format!("{text:?} contains `{p}`"));
    }
    Ok(text.to_string())
}

/// Directory trees no filesystem grant may name: the root (it would grant every path) and the
/// kernel's pseudo file systems, where "files" are devices and kernel settings, not space.
pub const REFUSED_DIRECTORIES: [&str; 4] = ["/", "/proc", "/sys", "/dev"];

/// A directory a filesystem grant names: absolute and canonical (no symlink, `.` or `..` on the
/// way), an existing directory when the policy was read, neither `/` nor inside `/proc`, `/sys`
/// or `/dev`. Calls open it again each time without following any symlink, so a directory
/// swapped for a link later is refused, not followed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GrantedDirectory(PathBuf);

impl GrantedDirectory {
    /// Validates `text` against the live file system.
    pub fn parse(text: &str) -> Result<GrantedDirectory, String> {
        let lexical = canonical_lexically(text)?;
        for refused in REFUSED_DIRECTORIES {
            if lexical == Path::new(refused) || (refused != "/" && lexical.starts_with(refused)) {
                return Err(format!(
                    "{text:?} is {}: a filesystem grant never names `/` or anything in /proc, /sys or /dev",
                    if refused == "/" {
                        "the root".to_string()
                    } else {
                        format!("inside {refused}")
                    }
                ));
            }
        }
        let meta = std::fs::symlink_metadata(&lexical)
            .map_err(|e| format!("{text:?} cannot be read: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{text:?} is a symlink: grant the directory it points to"
            ));
        }
        if !meta.is_dir() {
            return Err(format!("{text:?} is not a directory"));
        }
        let real = std::fs::canonicalize(&lexical)
            .map_err(|e| format!("{text:?} cannot be resolved: {e}"))?;
        if real != lexical {
            return Err(format!(
                "{text:?} passes through a symlink (it resolves to {:?}): grant the real path",
                real.display().to_string()
            ));
        }
        Ok(GrantedDirectory(lexical))
    }

    /// The canonical path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path` (absolute, lexically canonical) relative to this directory, when it is this
    /// directory (`""`) or lies beneath it; compared component by component (`/a/bc` is not
    /// beneath `/a/b`).
    pub fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        path.strip_prefix(&self.0).ok()
    }
}

impl fmt::Display for GrantedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// `text` as an absolute path without `.`, `//` or a trailing `/`; `..` and NUL are refused
/// (a `..` is never resolved lexically: after a symlink it means something else).
pub fn canonical_lexically(text: &str) -> Result<PathBuf, String> {
    if text.contains('\0') {
        return Err(format!("{text:?} contains a NUL byte"));
    }
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?} is not an absolute path"));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => return Err(format!("{text:?} contains `..`")),
            Component::Prefix(_) => return Err(format!("{text:?} is not a Unix path")),
        }
    }
    Ok(out)
}

/// Free space a fill must leave on a file system: a share of its size or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reserve {
    /// Percent (0–100) of the file system's size.
    Percent(f64),
    /// Bytes.
    Bytes(u64),
}

impl Reserve {
    /// The reserve when a grant sets none: 5 % of the file system.
    pub const DEFAULT: Reserve = Reserve::Percent(5.0);

    /// The reserve in bytes on a file system of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            // Rounded up: the reserve is a floor, never shaved.
            Reserve::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
            Reserve::Bytes(b) => b,
        }
    }

    fn parse(raw: &RawAmount) -> Result<Reserve, String> {
        match raw {
            RawAmount::Number(n) => u64::try_from(*n)
                .map(Reserve::Bytes)
                .map_err(|_| format!("{n} is not a number of bytes")),
            RawAmount::Text(t) => {
                let text = t.trim();
                if let Some(p) = text.strip_suffix('%') {
                    let p: f64 = p.trim().parse().map_err(|_| {
                        format!("{t:?} is not a percentage (`10%`) or a size (`1GiB`)")
                    })?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(format!("{t:?} is not a percentage from 0% to 100%"));
                    }
                    Ok(Reserve::Percent(p))
                } else {
                    parse_size(text).map(Reserve::Bytes)
                }
            }
        }
    }
}

impl fmt::Display for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserve::Percent(p) => write!(f, "{p}%"),
            Reserve::Bytes(b) => write!(f, "{}", bytesize::ByteSize::b(*b).display().iec()),
        }
    }
}

/// Parses a size: bytes (`1048576`) or a number with a unit (`500MiB`, `1GiB`, `2 GB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("{text:?} is not a size (`1GiB`, `500MiB`, or bytes)"))
}

/// Directories a grant lets faults fill and load, and the free space they must leave.
#[derive(Debug, Clone, PartialEq)]
pub struct FilesystemScope {
    /// Granted directories; a call's directory must be one of them or lie beneath one.
    pub directories: Vec<GrantedDirectory>,
    /// Free space a fill must leave on the file system ([`Reserve::DEFAULT`] when unset).
    pub reserve: Reserve,
}

impl Default for FilesystemScope {
    fn default() -> Self {
        FilesystemScope {
            directories: Vec::new(),
            reserve: Reserve::DEFAULT,
        }
    }
}

/// A bad value, located by its field (`network.destinations[1]`).
#[derive(Debug)]
pub(super) struct Located {
    pub field: String,
    pub problem: String,
}

impl Located {
    fn new(field: String, problem: String) -> Located {
        Located { field, problem }
    }
}

/// A port as TOML may write it: `80` or `"8000-8100"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

impl RawPort {
    fn compile(&self) -> Result<PortRange, String> {
        match self {
            RawPort::Number(n) => u16::try_from(*n)
                .map(|port| PortRange {
                    first: port,
                    last: port,
                })
                .map_err(|_| format!("{n} is not a port")),
            RawPort::Text(t) => PortRange::parse(t),
        }
    }
}

/// The scope tables as the file spells them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    #[serde(default)]
    pids: Vec<u32>,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    cmdlines: Vec<String>,
    #[serde(default)]
    users: Vec<u32>,
    #[serde(default)]
    cgroups: Vec<String>,
    #[serde(default)]
    signals: Vec<String>,
    #[serde(default)]
    stress: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCgroup {
    #[serde(default)]
    subtrees: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    interfaces: Vec<String>,
    destinations: Option<Vec<String>>,
    ports: Option<Vec<RawPort>>,
}

/// An amount as TOML may write it: bytes as a number, or a string (`"10%"`, `"1GiB"`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawAmount {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilesystem {
    #[serde(default)]
    directories: Vec<String>,
    reserve: Option<RawAmount>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbound {
    #[serde(default)]
    destinations: Vec<String>,
    ports: Option<Vec<RawPort>>,
    hosts: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    #[serde(default)]
    programs: Vec<RawProgram>,
}

/// A program as TOML may write it: `"/usr/bin/pg_isready"` (any arguments) or
/// `{ path = "/usr/bin/pg_isready", args = ["-h", "127.0.0.1"] }`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawProgram {
    Path(String),
    Rule { path: String, args: Vec<String> },
}

/// Maps each `(index, value)` of a list through `parse`, naming `field[index]` on error.
fn each<T, U>(
    field: &str,
    values: &[T],
    parse: impl Fn(&T) -> Result<U, String>,
) -> Result<Vec<U>, Located> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|p| Located::new(format!("{field}[{i}]"), p)))
        .collect()
}

impl RawProcess {
    pub(super) fn compile(&self) -> Result<ProcessScope, Located> {
        Ok(ProcessScope {
            pids: self.pids.clone(),
            names: self.names.clone(),
            cmdlines: each("process.cmdlines", &self.cmdlines, |re| {
                Regex::new(re).map_err(|e| format!("{re:?} is not a regex: {e}"))
            })?,
            users: self.users.clone(),
            cgroups: each("process.cgroups", &self.cgroups, |c| CgroupPath::parse(c))?,
            signals: dedup(each("process.signals", &self.signals, |s| {
                SignalName::parse(s)
            })?),
            stress: dedup(each("process.stress", &self.stress, |s| {
                StressKind::parse(s)
            })?),
        })
    }
}

fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

impl RawCgroup {
    pub(super) fn compile(&self) -> Result<Vec<CgroupPath>, Located> {
        each("cgroup.subtrees", &self.subtrees, |c| CgroupPath::parse(c))
    }
}

impl RawNetwork {
    pub(super) fn compile(&self) -> Result<NetworkScope, Located> {
        let mut scope = NetworkScope::default();
        let mut named = Vec::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let field = format!("network.namespaces[{i}]");
            match ns.as_str() {
                "host" => scope.host = true,
                "pid" => scope.pid = true,
                _ => match ns.strip_prefix("named:") {
                    Some(glob) if !glob.is_empty() => named.push((field, glob)),
                    _ => {
                        return Err(Located::new(
                            field,
                            format!("{ns:?} is not `host`, `pid` or `named:<glob>`"),
                        ));
                    }
                },
            }
        }
        scope.named = globs(named)?;
        scope.interfaces = globs(
            self.interfaces
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("network.interfaces[{i}]"), g.as_str())),
        )?;
        // An empty list would read as "none" but the old meaning of no list was "any": rather
        // than guess, refuse it and make the operator say which.
        if let Some(d) = &self.destinations {
            if d.is_empty() {
                return Err(Located::new(
                    "network.destinations".to_string(),
                    "an empty list is ambiguous: omit the field to allow any destination, or list CIDRs"
                        .to_string(),
                ));
            }
            scope.destinations = Some(each("network.destinations", d, |text| {
                parse_net(text).ok_or_else(|| format!("{text:?} is not a CIDR"))
            })?);
        }
        if let Some(p) = &self.ports {
            if p.is_empty() {
                return Err(Located::new(
                    "network.ports".to_string(),
                    "an empty list is ambiguous: omit the field to allow any port, or list ports"
                        .to_string(),
                ));
            }
            scope.ports = Some(each("network.ports", p, RawPort::compile)?);
        }
        Ok(scope)
    }
}

impl RawFilesystem {
    pub(super) fn compile(&self) -> Result<FilesystemScope, Located> {
        let reserve = match &self.reserve {
            None => Reserve::DEFAULT,
            Some(raw) => Reserve::parse(raw)
                .map_err(|p| Located::new("filesystem.reserve".to_string(), p))?,
        };
        let mut directories = each("filesystem.directories", &self.directories, |d| {
            GrantedDirectory::parse(d)
        })?;
        directories.sort();
        directories.dedup();
        Ok(FilesystemScope {
            directories,
            reserve,
        })
    }
}

impl RawOutbound {
    pub(super) fn compile(&self) -> Result<OutboundScope, Located> {
        let destinations = each("outbound.destinations", &self.destinations, |text| {
            parse_net(text).map(canonical_net).ok_or_else(|| {
                format!("{text:?} is not a CIDR or an address (names go in `outbound.hosts`)")
            })
        })?;
        let ports = match &self.ports {
            Some(p) if p.is_empty() => {
                return Err(Located::new(
                    "outbound.ports".to_string(),
                    "an empty list is ambiguous: omit the field to allow any port, or list ports"
                        .to_string(),
                ));
            }
            Some(p) => Some(each("outbound.ports", p, RawPort::compile)?),
            None => None,
        };
        let hosts = match &self.hosts {
            Some(h) if h.is_empty() => {
                return Err(Located::new(
                    "outbound.hosts".to_string(),
                    "an empty list is ambiguous: omit the field to allow any name, or list globs"
                        .to_string(),
                ));
            }
            Some(h) => {
                for (i, text) in h.iter().enumerate() {
                    // 0.1 policies wrote `hosts = ["127.0.0.1:8080"]`: an address (or a port)
                    // there would read as a name that never matches; say where it goes instead.
                    let field = format!("outbound.hosts[{i}]");
                    if text.contains(':') || parse_net(text).is_some() {
                        return Err(Located::new(
                            field,
                            format!(
                                "{text:?} is not a host-name glob: addresses go in \
                                 `outbound.destinations`, ports in `outbound.ports`"
                            ),
                        ));
                    }
                }
                // Names are case-insensitive: patterns and names are both compared in lowercase.
                let lower: Vec<String> = h.iter().map(|g| g.to_ascii_lowercase()).collect();
                Some(globs(
                    lower
                        .iter()
                        .enumerate()
                        .map(|(i, g)| (format!("outbound.hosts[{i}]"), g.as_str())),
                )?)
            }
            None => None,
        };
        if destinations.is_empty() && (ports.is_some() || hosts.is_some()) {
            return Err(Located::new(
                "outbound.destinations".to_string(),
                "no destination is listed, so nothing is reachable: list the networks the names \
                 may resolve to (`127.0.0.1`, `10.0.0.0/8`)"
                    .to_string(),
            ));
        }
        Ok(OutboundScope {
            destinations,
            ports,
            hosts,
        })
    }
}

impl RawCommand {
    pub(super) fn compile(&self) -> Result<Vec<ProgramRule>, Located> {
        let mut out = Vec::new();
        for (i, raw) in self.programs.iter().enumerate() {
            let field = format!("command.programs[{i}]");
            let (path, args) = match raw {
                RawProgram::Path(p) => (p, None),
                RawProgram::Rule { path, args } => (path, Some(args)),
            };
            let path = program_path(path).map_err(|p| Located::new(field.clone(), p))?;
            let args = match args {
                None => None,
                Some(args) => Some(each(&format!("{field}.args"), args, |text| {
                    let matcher = GlobBuilder::new(text)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| format!("{text:?} is not a glob: {}", e.kind()))?
                        .compile_matcher();
                    Ok(ArgGlob {
                        text: text.clone(),
                        matcher,
                    })
                })?),
            };
            out.push(ProgramRule { path, args });
        }
        Ok(out)
    }
}
