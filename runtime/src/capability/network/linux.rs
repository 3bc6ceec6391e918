//! Linux backend of the `network` capability.
//!
//! Every change lives in kernel objects named after its tag, so that a process which never saw
//! it applied (after a crash, or a reboot that did not undo it) can find and remove it again:
//!
//! - an nftables table `faultline_<tag>` (family `inet` for loss, blackhole, reject and DNS
//!   failure; family `netdev`, egress hook, for duplication without netem),
//! - an iptables-legacy chain `faultline_<tag>` in the `mangle` table, jumped to from `OUTPUT`,
//!   sending packets to an NFQUEUE served by a worker thread inside the namespace (delay and
//!   corruption without netem, DNS failure by name; `--queue-bypass`, so packets flow if the
//!   worker is gone),
//! - a root qdisc whose handle is derived from the tag (bandwidth, and netem where the kernel has
//!   it), installed only where the root qdisc is the kernel's default, so undo restores the
//!   interface exactly by deleting it.
//!
//! In the agent's own network namespace every change also spares the agent's endpoints
//! ([`NetworkBackend::protect`]: its API, its hubs): an exception ahead of the fault's rules,
//! inside the same kernel object, so undo removes it with the rest (`protect.rs`).
//!
//! ```no_run
//! use faultline::capability::network::linux::{
//!     Effect, Namespace, NetworkBackend, Protocol, Traffic,
//! };
//!
//! let backend = NetworkBackend::new();
//! let traffic = Traffic {
//!     namespace: Namespace::Named("web".into()),
//!     interfaces: vec!["eth0".into()],
//!     destinations: vec!["10.0.0.0/8".into()],
//!     ports: vec![(5432, 5432)],
//!     protocol: Protocol::Tcp,
//! };
//! let effect = Effect::Loss { percent: 20.0 };
//! let inverse = backend.prepare("a1", &traffic, &effect)?;
//! // The caller journals `inverse` durably here, before touching anything.
//! backend.apply("a1", &traffic, &effect, &inverse)?;
//! backend.undo(&inverse)?;
//! # Ok::<(), faultline::capability::CapError>(())
//! ```

mod dns;
mod filter;
mod netns;
mod nfqueue;
mod nft;
mod protect;
mod tc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::capability::{CapError, CapResult};

pub use dns::{DnsFailure, MAX_NAMES};
use filter::Filter;
use netns::{NetNs, NsId};
use protect::Protected;

/// Whose network namespace a change applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The agent's own.
    Host,
    /// The namespace of this process.
    Pid(u32),
    /// A named namespace (`ip netns`, under `/run/netns`).
    Named(String),
}

/// The interface names in a network namespace, sorted: `/proc/thread-self/net/dev` read on a
/// thread that joined it (nothing is run, nothing changes). For `faultline policy explain`.
pub fn interface_names(namespace: &Namespace) -> CapResult<Vec<String>> {
    use std::io::Read;
    let ns = NetNs::open(namespace)?;
    ns.within(|| {
        let mut text = String::new();
        std::fs::File::open("/proc/thread-self/net/dev")
            .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
            .map_err(|e| CapError::Failed(format!("cannot list interfaces: {e}")))?;
        let mut names: Vec<String> = text
            .lines()
            .skip(2)
            .filter_map(|l| l.split_once(':'))
            .map(|(name, _)| name.trim().to_string())
            .collect();
        names.sort();
        Ok(names)
    })
}

/// Transport protocols a filter can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Any protocol; with ports, TCP and UDP.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (ICMPv6 for IPv6 destinations); takes no ports.
    Icmp,
}

/// Which traffic a change applies to: egress on these interfaces, to these destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Whose network namespace.
    pub namespace: Namespace,
    /// Interface names in that namespace; must not be empty.
    pub interfaces: Vec<String>,
    /// Destination CIDRs (`10.0.0.0/8`, `::1/128`, or a bare address); empty means all.
    pub destinations: Vec<String>,
    /// Inclusive destination port ranges; empty means every port.
    pub ports: Vec<(u16, u16)>,
    /// Transport protocol.
    pub protocol: Protocol,
}

/// What happens to the matching traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Delays packets by `delay_ms` ± `jitter_ms` (uniform).
    Delay {
        /// Added one-way delay, at most 60 000 ms.
        delay_ms: u32,
        /// Maximum deviation either side of `delay_ms`, at most 60 000 ms.
        jitter_ms: u32,
    },
    /// Drops `percent` of packets at random.
    Loss {
        /// 0 to 100.
        percent: f32,
    },
    /// Corrupts `percent` of packets (one bit after the IP header is flipped).
    Corruption {
        /// 0 to 100.
        percent: f32,
    },
    /// Sends `percent` of packets twice.
    Duplication {
        /// 0 to 100.
        percent: f32,
    },
    /// Caps egress to `rate_kbit` kilobits (1000 bits) per second.
    Bandwidth {
        /// 1 to 100 000 000.
        rate_kbit: u64,
    },
    /// Drops every matching packet.
    Blackhole,
    /// Rejects matching packets: TCP reset, ICMP port unreachable otherwise.
    Reject,
    /// Rejects DNS queries (UDP and TCP port 53) to the destinations.
    DnsFailure,
    /// Makes UDP DNS queries (port 53) to the destinations for these names fail: dropped, or
    /// answered NXDOMAIN or SERVFAIL in the server's place. Other queries pass.
    DnsNames {
        /// `db.internal`, `*.internal` (names below it) or `*`; empty: every name. At most
        /// [`MAX_NAMES`].
        names: Vec<String>,
        /// How they fail.
        failure: DnsFailure,
    },
}

/// Everything needed to undo one change, in a fresh process if need be.
///
/// Journal it durably before [`NetworkBackend::apply`]; it stays valid after a crash, and after
/// a reboot [`NetworkBackend::is_present`] tells whether there is anything left to undo.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Inverse {
    tag: String,
    namespace: NsId,
    steps: Vec<Step>,
}

impl Inverse {
    /// The tag the change was prepared with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// What a person runs to undo this when the host cannot: each kernel object removed by
    /// hand, newest first, inside the right namespace.
    pub fn manual_steps(&self) -> String {
        let within = match &self.namespace {
            NsId::Host => String::new(),
            NsId::Pid { pid, .. } => format!("nsenter -t {pid} -n "),
            NsId::Named { name, .. } => format!("ip netns exec {name} "),
        };
        let steps: Vec<String> = self
            .steps
            .iter()
            .rev()
            .filter_map(|step| match step {
                Step::NftTable { family, name } => {
                    Some(format!("{within}nft delete table {family} {name}"))
                }
                Step::IptablesChain { ipv6, chain } => {
                    let tool = if *ipv6 {
                        "ip6tables-legacy"
                    } else {
                        "iptables-legacy"
                    };
                    Some(format!(
                        "{within}{tool} -t mangle -D OUTPUT -j {chain}; \
                         {within}{tool} -t mangle -F {chain}; {within}{tool} -t mangle -X {chain}"
                    ))
                }
                Step::RootQdisc { interface, .. } => {
                    Some(format!("{within}tc qdisc del dev {interface} root"))
                }
                Step::QueueWorker => None,
            })
            .collect();
        steps.join("; ")
    }
}

/// One kernel object a change creates; undoing removes exactly it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
enum Step {
    /// An nftables table of ours.
    NftTable { family: String, name: String },
    /// A mangle chain of ours in iptables-legacy (`ipv6`: ip6tables-legacy) and its jump from
    /// `OUTPUT`.
    IptablesChain { ipv6: bool, chain: String },
    /// A root qdisc of ours; `found` is the default root it replaced, for the record.
    RootQdisc {
        interface: String,
        handle: u16,
        found: String,
    },
    /// The in-process NFQUEUE worker serving this tag, if this process runs it.
    QueueWorker,
}

/// The Linux backend: runs `ip`, `tc`, `nft` and `iptables-legacy` in the target namespace and
/// owns the NFQUEUE worker threads. Dropping it stops them; their rules then let packets pass
/// until [`NetworkBackend::undo`] removes the rules.
pub struct NetworkBackend {
    netem: OnceLock<bool>,
    workers: Mutex<HashMap<String, nfqueue::Worker>>,
    protected: RwLock<Vec<SocketAddr>>,
}

impl Default for NetworkBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl NetworkBackend {
    /// A backend with no workers; whether the kernel has netem is probed on first use.
    pub fn new() -> Self {
        NetworkBackend {
            netem: OnceLock::new(),
            workers: Mutex::new(HashMap::new()),
            protected: RwLock::default(),
        }
    }

    /// Keeps TCP traffic to and from `addr` out of every change applied from now on in the
    /// caller's own network namespace (where the agent's sockets are): the agent's API listen
    /// address, a hub it syncs from. An unspecified address (`0.0.0.0:7787`) spares the port on
    /// every address. Changes in other namespaces are not affected: the agent has no socket
    /// there.
    pub fn protect(&self, addr: SocketAddr) {
        let mut p = self.protected.write().unwrap_or_else(|e| e.into_inner());
        if !p.contains(&addr) {
            p.push(addr);
        }
    }

    /// The endpoints [`NetworkBackend::protect`] was given, in order.
    pub fn protected(&self) -> Vec<SocketAddr> {
        self.protected
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What a change in `ns` spares: the protected endpoints in the caller's own namespace,
    /// nothing elsewhere.
    fn spared_in(&self, ns: &NetNs) -> Protected {
        if ns.is_callers_own() {
            Protected::new(&self.protected())
        } else {
            Protected::default()
        }
    }

    fn has_netem(&self) -> bool {
        *self.netem.get_or_init(tc::probe_netem)
    }

    /// Validates, resolves the namespace, checks the state it will change, and returns the undo
    /// record. Changes nothing.
    pub fn prepare(&self, tag: &str, traffic: &Traffic, effect: &Effect) -> CapResult<Inverse> {
        validate_tag(tag)?;
        validate_effect(effect, traffic)?;
        let filter = Filter::parse(traffic)?;
        let ns = NetNs::open(&traffic.namespace)?;
        for interface in &traffic.interfaces {
            ns.check_interface(interface)?;
        }
        // Records the default root each qdisc step replaces, and refuses to replace any other.
        let steps = self
            .plan(tag, &filter, effect)
            .into_iter()
            .map(|step| match step {
                Step::RootQdisc {
                    interface, handle, ..
                } => {
                    let found = tc::default_root(&ns, &interface)?;
                    Ok(Step::RootQdisc {
                        interface,
                        handle,
                        found,
                    })
                }
                other => Ok(other),
            })
            .collect::<CapResult<Vec<_>>>()?;
        Ok(Inverse {
            tag: tag.to_string(),
            namespace: ns.id(),
            steps,
        })
    }

    /// Makes the change prepared as `inverse`. On failure it undoes what it did before
    /// returning the error.
    pub fn apply(
        &self,
        tag: &str,
        traffic: &Traffic,
        effect: &Effect,
        inverse: &Inverse,
    ) -> CapResult<()> {
        validate_tag(tag)?;
        validate_effect(effect, traffic)?;
        let filter = Filter::parse(traffic)?;
        let planned: Vec<Step> = self.plan(tag, &filter, effect);
        if inverse.tag != tag || !same_steps(&planned, &inverse.steps) {
            return Err(CapError::Invalid(format!(
                "undo record for tag {} does not match this change",
                inverse.tag
            )));
        }
        let ns = NetNs::open(&traffic.namespace)?;
        if !ns.is(&inverse.namespace) {
            return Err(CapError::TargetGone(
                "the network namespace changed since the change was prepared".to_string(),
            ));
        }
        let spared = self.spared_in(&ns);
        let result = self.apply_in(&ns, tag, &filter, effect, inverse, &spared);
        if result.is_err() {
            // Leave nothing half-done; the journal's undo would do the same, this is just sooner.
            let _ = self.undo(inverse);
        }
        result
    }

    fn apply_in(
        &self,
        ns: &NetNs,
        tag: &str,
        filter: &Filter,
        effect: &Effect,
        inverse: &Inverse,
        spared: &Protected,
    ) -> CapResult<()> {
        let handle = |interface: &str| {
            inverse.steps.iter().find_map(|s| match s {
                Step::RootQdisc {
                    interface: i,
                    handle,
                    ..
                } if i == interface => Some(*handle),
                _ => None,
            })
        };
        let netem = self.has_netem();
        match *effect {
            Effect::Loss { percent } => {
                nft::apply(ns, tag, filter, nft::Action::Drop(percent), spared)
            }
            Effect::Blackhole => nft::apply(ns, tag, filter, nft::Action::Drop(100.0), spared),
            Effect::Reject => nft::apply(ns, tag, filter, nft::Action::Reject, spared),
            Effect::DnsFailure => nft::apply(ns, tag, &filter.dns(), nft::Action::Reject, spared),
            Effect::Bandwidth { rate_kbit } => {
                for interface in &filter.interfaces {
                    let h = handle(interface).ok_or_else(missing_handle)?;
                    tc::limit_bandwidth(ns, interface, h, filter, rate_kbit, spared)?;
                }
                Ok(())
            }
            Effect::Delay { .. } | Effect::Corruption { .. } | Effect::Duplication { .. }
                if netem =>
            {
                for interface in &filter.interfaces {
                    let h = handle(interface).ok_or_else(missing_handle)?;
                    tc::netem(ns, interface, h, filter, &tc::netem_args(effect), spared)?;
                }
                Ok(())
            }
            Effect::Duplication { percent } => nft::duplicate(ns, tag, filter, percent, spared),
            Effect::Delay {
                delay_ms,
                jitter_ms,
            } => self.queue(
                ns,
                tag,
                filter,
                None,
                nfqueue::Mode::Delay {
                    delay_ms,
                    jitter_ms,
                },
                spared,
            ),
            Effect::Corruption { percent } => self.queue(
                ns,
                tag,
                filter,
                Some(percent),
                nfqueue::Mode::Corrupt,
                spared,
            ),
            Effect::DnsNames { ref names, failure } => {
                let rule = dns::Rule {
                    names: dns::Names::parse(names)?,
                    failure,
                };
                self.queue(
                    ns,
                    tag,
                    &filter.dns_udp(),
                    None,
                    nfqueue::Mode::Dns(rule),
                    spared,
                )
            }
        }
    }

    fn queue(
        &self,
        ns: &NetNs,
        tag: &str,
        filter: &Filter,
        percent: Option<f32>,
        mode: nfqueue::Mode,
        spared: &Protected,
    ) -> CapResult<()> {
        nfqueue::check_tools(ns, filter)?;
        let avoid = nfqueue::queues_in_use(ns)?;
        let worker = nfqueue::Worker::start(ns, tag, &avoid, mode)?;
        let queue_num = worker.queue_num();
        self.lock_workers().insert(tag.to_string(), worker);
        nfqueue::add_rules(ns, tag, filter, percent, queue_num, spared)
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, nfqueue::Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Undoes a change. Idempotent; works on a partly applied or already undone change and in a
    /// process that never applied it. A namespace that is gone counts as undone.
    pub fn undo(&self, inverse: &Inverse) -> CapResult<()> {
        validate_tag(&inverse.tag)?;
        let mut errors = Vec::new();
        let ns = match NetNs::reopen(&inverse.namespace) {
            Ok(ns) => Some(ns),
            Err(CapError::TargetGone(_)) => None,
            Err(e) => return Err(e),
        };
        // Rules first, so no new packet reaches the worker; then the worker releases what it
        // holds.
        for step in &inverse.steps {
            let Some(ns) = &ns else { break };
            let result = match step {
                Step::NftTable { family, name } => nft::delete_table(ns, family, name),
                Step::IptablesChain { ipv6, chain } => nfqueue::delete_chain(ns, *ipv6, chain),
                Step::RootQdisc {
                    interface, handle, ..
                } => tc::delete_root(ns, interface, *handle),
                Step::QueueWorker => Ok(()),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        if let Some(worker) = self.lock_workers().remove(&inverse.tag) {
            worker.stop();
        }
        match errors.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Whether the live system still carries any part of this change.
    pub fn is_present(&self, inverse: &Inverse) -> CapResult<bool> {
        validate_tag(&inverse.tag)?;
        let ns = match NetNs::reopen(&inverse.namespace) {
            Ok(ns) => ns,
            Err(CapError::TargetGone(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        for step in &inverse.steps {
            let present = match step {
                Step::NftTable { family, name } => nft::has_table(&ns, family, name)?,
                Step::IptablesChain { ipv6, chain } => nfqueue::has_chain(&ns, *ipv6, chain)?,
                Step::RootQdisc {
                    interface, handle, ..
                } => tc::root_is(&ns, interface, *handle)?,
                Step::QueueWorker => self.lock_workers().contains_key(&inverse.tag),
            };
            if present {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One line per effect naming the mechanism this host uses for it.
    pub fn describe_backends(&self) -> Vec<String> {
        let netem = self.has_netem();
        let (delay, corruption, duplication) = if netem {
            (
                "delay: tc netem under a prio root qdisc, u32 filters",
                "corruption: tc netem corrupt under a prio root qdisc, u32 filters",
                "duplication: tc netem duplicate under a prio root qdisc, u32 filters",
            )
        } else {
            (
                "delay: iptables-legacy mangle NFQUEUE (queue-bypass) and a userspace worker that holds packets (no sch_netem)",
                "corruption: iptables-legacy statistic + NFQUEUE, a userspace worker flips one bit after the IP header (no sch_netem)",
                "duplication: nftables netdev egress numgen + dup (no sch_netem)",
            )
        };
        vec![
            delay.to_string(),
            "loss: nftables numgen random drop, output hook".to_string(),
            corruption.to_string(),
            duplication.to_string(),
            "bandwidth: tc tbf root qdisc; htb + u32 filters when filtered by destination, port or protocol".to_string(),
            "blackhole: nftables drop, output hook".to_string(),
            "reject: nftables reject (tcp reset, icmp port unreachable), output hook".to_string(),
            "dns failure: nftables reject of udp and tcp port 53, output hook".to_string(),
            "dns failure by name: iptables-legacy mangle NFQUEUE of udp port 53 (queue-bypass); a userspace worker drops matching queries or answers them NXDOMAIN/SERVFAIL through a raw socket".to_string(),
            "the agent's own endpoints (its API, its hubs), in its own namespace: spared by nftables accept, iptables RETURN or tc u32 filters to an unshaped class, ahead of the fault's rules in the fault's own table, chain or qdisc".to_string(),
        ]
    }

    /// The kernel objects a change will create, in the order undo removes them.
    fn plan(&self, tag: &str, filter: &Filter, effect: &Effect) -> Vec<Step> {
        let table = format!("faultline_{tag}");
        let root_qdiscs = || {
            filter
                .interfaces
                .iter()
                .map(|interface| Step::RootQdisc {
                    interface: interface.clone(),
                    handle: tc::handle_for(tag),
                    found: String::new(),
                })
                .collect::<Vec<_>>()
        };
        match effect {
            Effect::Loss { .. } | Effect::Blackhole | Effect::Reject | Effect::DnsFailure => {
                vec![Step::NftTable {
                    family: "inet".to_string(),
                    name: table,
                }]
            }
            Effect::Bandwidth { .. } => root_qdiscs(),
            Effect::Delay { .. } | Effect::Corruption { .. } | Effect::Duplication { .. }
                if self.has_netem() =>
            {
                root_qdiscs()
            }
            Effect::Duplication { .. } => vec![Step::NftTable {
                family: "netdev".to_string(),
                name: table,
            }],
            Effect::Delay { .. } | Effect::Corruption { .. } | Effect::DnsNames { .. } => {
                let mut steps: Vec<Step> = filter
                    .families()
                    .into_iter()
                    .map(|ipv6| Step::IptablesChain {
                        ipv6,
                        chain: table.clone(),
                    })
                    .collect();
                steps.push(Step::QueueWorker);
                steps
            }
        }
    }
}

/// Plans compare without the snapshot text, which only prepare fills in.
fn same_steps(planned: &[Step], recorded: &[Step]) -> bool {
    let strip = |s: &Step| match s {
        Step::RootQdisc {
            interface, handle, ..
        } => Step::RootQdisc {
            interface: interface.clone(),
            handle: *handle,
            found: String::new(),
        },
        other => other.clone(),
    };
    planned.len() == recorded.len()
        && planned
            .iter()
            .zip(recorded)
            .all(|(a, b)| strip(a) == strip(b))
}

/// FNV-1a of a tag: stable across processes and releases, unlike the std hasher, so numbers
/// derived from it (qdisc handles, queue numbers) are found again after a restart.
fn tag_hash(tag: &str) -> u32 {
    tag.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn missing_handle() -> CapError {
    CapError::Invalid("undo record has no qdisc for an interface of this change".to_string())
}

fn validate_tag(tag: &str) -> CapResult<()> {
    let ok = (1..=12).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(CapError::Invalid(format!(
            "tag {tag:?} must be 1 to 12 characters of [a-z0-9]"
        )))
    }
}

const MAX_DELAY_MS: u32 = 60_000;
const MAX_RATE_KBIT: u64 = 100_000_000;

fn validate_effect(effect: &Effect, traffic: &Traffic) -> CapResult<()> {
    let percent = |p: f32| {
        if p.is_finite() && (0.0..=100.0).contains(&p) {
            Ok(())
        } else {
            Err(CapError::Invalid(format!(
                "percent {p} is not between 0 and 100"
            )))
        }
    };
    match *effect {
        Effect::Delay {
            delay_ms,
            jitter_ms,
        } => {
            if delay_ms > MAX_DELAY_MS || jitter_ms > MAX_DELAY_MS {
                return Err(CapError::Invalid(format!(
                    "delay and jitter must be at most {MAX_DELAY_MS} ms"
                )));
            }
            Ok(())
        }
        Effect::Loss { percent: p }
        | Effect::Corruption { percent: p }
        | Effect::Duplication { percent: p } => percent(p),
        Effect::Bandwidth { rate_kbit } => {
            if (1..=MAX_RATE_KBIT).contains(&rate_kbit) {
                Ok(())
            } else {
                Err(CapError::Invalid(format!(
                    "rate {rate_kbit} kbit/s is not between 1 and {MAX_RATE_KBIT}"
                )))
            }
        }
        Effect::Blackhole | Effect::Reject => Ok(()),
        Effect::DnsFailure => {
            if !traffic.ports.is_empty() {
                return Err(CapError::Invalid(
                    "dns failure takes no ports: it always matches port 53".to_string(),
                ));
            }
            if traffic.protocol == Protocol::Icmp {
                return Err(CapError::Invalid(
                    "dns failure applies to udp or tcp, not icmp".to_string(),
                ));
            }
            Ok(())
        }
        Effect::DnsNames { ref names, .. } => {
            if !traffic.ports.is_empty() {
                return Err(CapError::Invalid(
                    "dns failure by name takes no ports: it always matches udp port 53".to_string(),
                ));
            }
            if !matches!(traffic.protocol, Protocol::Any | Protocol::Udp) {
                return Err(CapError::Invalid(
                    "dns failure by name applies to udp queries only".to_string(),
                ));
            }
            dns::Names::parse(names).map(drop)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_lowercase_alphanumerics() {
        assert!(validate_tag("a1").is_ok());
        assert!(validate_tag("abcdefghijkl").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("abcdefghijklm").is_err());
        assert!(validate_tag("A1").is_err());
        assert!(validate_tag("a-1").is_err());
    }

    #[test]
    fn percentages_are_checked() {
        let traffic = Traffic {
            namespace: Namespace::Host,
            interfaces: vec!["lo".into()],
            destinations: vec![],
            ports: vec![],
            protocol: Protocol::Any,
        };
        for bad in [-1.0, 100.5, f32::NAN, f32::INFINITY] {
            assert!(validate_effect(&Effect::Loss { percent: bad }, &traffic).is_err());
        }
        assert!(validate_effect(&Effect::Loss { percent: 100.0 }, &traffic).is_ok());
    }

    #[test]
    fn inverse_round_trips_through_json() {
        let inverse = Inverse {
            tag: "t1".into(),
            namespace: NsId::Named {
                name: "x".into(),
                dev: 4,
                ino: 4026532000,
            },
            steps: vec![
                Step::NftTable {
                    family: "inet".into(),
                    name: "faultline_t1".into(),
                },
                Step::QueueWorker,
            ],
        };
        let json = serde_json::to_string(&inverse).unwrap();
        let back: Inverse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inverse);
        assert!(json.contains("faultline_t1"));
    }
}
