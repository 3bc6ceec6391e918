//! The `network` capability: delay, loss, corruption, duplication, bandwidth, blackhole,
//! reject and DNS failure (every query, or chosen names), in a chosen network namespace.
//!
//! Scope, from the policy's network grants: a call must fit one grant entirely — its namespace
//! (`host`, `pid` for a process in the process scope, `named:<glob>`) AND every interface (globs)
//! AND every destination CIDR (inside a granted one; a grant without `destinations` allows any)
//! AND every port range (likewise). A call without destinations or ports means all of them,
//! so only a grant without that field covers it; DNS failure is checked as port 53.
//!
//! Whatever a grant allows, a change in the agent's own namespace spares the agent's own
//! connections (its API, its hubs: [`crate::host::Host::protect_endpoint`],
//! [`crate::host::Host::spare_hub_sources`]).

#[cfg(target_os = "linux")]
pub mod linux;

use super::{Backends, CapError, CapResult, Change, Context, GuestResult, Inverse};
use crate::contract::network::{DnsFailure, Host, Namespace, PortRange, Protocol, Traffic};
use crate::policy::scope::parse_net;
use crate::policy::{NetworkScope, Scoped};
use linux::Effect;

impl Context {
    fn network_scope(&self, t: &Traffic) -> CapResult<()> {
        let ns = match &t.namespace {
            Namespace::Host => "the host network namespace".to_string(),
            Namespace::Pid(p) => format!("the network namespace of process {p}"),
            Namespace::Named(n) => format!("network namespace {n}"),
        };
        if let Namespace::Pid(pid) = &t.namespace {
            let p = super::process::linux::info(*pid)
                .ok_or_else(|| CapError::TargetGone(format!("process {pid} does not exist")))?;
            self.process_in_scope(&p)?;
        }
        // The call's destinations, parsed once; one the guest got wrong is its error, not a
        // silent "outside the scope".
        let destinations = t
            .destinations
            .iter()
            .map(|d| {
                parse_net(d)
                    .ok_or_else(|| CapError::Invalid(format!("destination {d:?} is not a cidr")))
            })
            .collect::<CapResult<Vec<_>>>()?;
        let fits = |s: &Scoped<NetworkScope>| {
            let s = &s.scope;
            let ns_ok = match &t.namespace {
                Namespace::Host => s.host,
                Namespace::Pid(_) => s.pid,
                Namespace::Named(n) => s.named.is_match(n),
            };
            let ifaces_ok =
                !t.interfaces.is_empty() && t.interfaces.iter().all(|i| s.interfaces.is_match(i));
            // No destination in the call means every destination: only an open grant covers it.
            let dest_ok = s.destinations.as_ref().is_none_or(|granted| {
                !destinations.is_empty()
                    && destinations
                        .iter()
                        .all(|d| granted.iter().any(|g| g.contains(d)))
            });
            let ports_ok = s.ports.as_ref().is_none_or(|granted| {
                !t.ports.is_empty()
                    && t.ports
                        .iter()
                        .all(|r| granted.iter().any(|g| g.covers(r.first, r.last)))
            });
            ns_ok && ifaces_ok && dest_ok && ports_ok
        };
        if self.grants.network.iter().any(fits) {
            Ok(())
        } else {
            Err(self.denied(&format!(
                "traffic on {:?} to {:?} ports {:?} in {ns}",
                t.interfaces,
                t.destinations,
                t.ports
                    .iter()
                    .map(|r| (r.first, r.last))
                    .collect::<Vec<_>>()
            )))
        }
    }

    /// Makes a network change, journalled with everything needed to undo it.
    pub fn network_change(&mut self, t: Traffic, effect: Effect) -> CapResult<u64> {
        if matches!(effect, Effect::DnsFailure | Effect::DnsNames { .. }) && t.ports.is_empty() {
            // A DNS fault touches port 53 only: a grant of port 53 covers it.
            let mut dns = t.clone();
            dns.ports = vec![PortRange {
                first: 53,
                last: 53,
            }];
            self.network_scope(&dns)?;
        } else {
            self.network_scope(&t)?;
        }
        let traffic = linux::Traffic {
            namespace: match t.namespace {
                Namespace::Host => linux::Namespace::Host,
                Namespace::Pid(p) => linux::Namespace::Pid(p),
                Namespace::Named(n) => linux::Namespace::Named(n),
            },
            interfaces: t.interfaces,
            destinations: t.destinations,
            ports: t.ports.iter().map(|r| (r.first, r.last)).collect(),
            protocol: match t.protocol {
                Protocol::Any => linux::Protocol::Any,
                Protocol::Tcp => linux::Protocol::Tcp,
                Protocol::Udp => linux::Protocol::Udp,
                Protocol::Icmp => linux::Protocol::Icmp,
            },
        };
        let tag = format!("{:010x}", rand::random::<u64>() & 0xff_ffff_ffff);
        let backends = self.backends.clone();
        let inverse = backends.network.prepare(&tag, &traffic, &effect)?;
        // Bounded: a list of names could otherwise make every journal line kilobytes long.
        let mut what = format!("{effect:?}");
        if let Some((cut, _)) = what.char_indices().nth(200) {
            what.truncate(cut);
            what.push('…');
        }
        let summary = format!("network {what} on {:?} (tag {tag})", traffic.interfaces);
        self.change(&summary, Inverse::Network(inverse.clone()), || {
            backends.network.apply(&tag, &traffic, &effect, &inverse)
        })
    }
}

impl Host for Context {
    async fn add_delay(&mut self, t: Traffic, delay_ms: u32, jitter_ms: u32) -> GuestResult<u64> {
        let effect = Effect::Delay {
            delay_ms,
            jitter_ms,
        };
        self.blocking(move |c| c.network_change(t, effect)).await
    }

    async fn add_loss(&mut self, t: Traffic, percent: f32) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Loss { percent }))
            .await
    }

    async fn add_corruption(&mut self, t: Traffic, percent: f32) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Corruption { percent }))
            .await
    }

    async fn add_duplication(&mut self, t: Traffic, percent: f32) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Duplication { percent }))
            .await
    }

    async fn limit_bandwidth(&mut self, t: Traffic, rate_kbit: u64) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Bandwidth { rate_kbit }))
            .await
    }

    async fn blackhole(&mut self, t: Traffic) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Blackhole))
            .await
    }

    async fn reject(&mut self, t: Traffic) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::Reject))
            .await
    }

    async fn fail_dns(&mut self, t: Traffic) -> GuestResult<u64> {
        self.blocking(move |c| c.network_change(t, Effect::DnsFailure))
            .await
    }

    async fn fail_dns_names(
        &mut self,
        t: Traffic,
        names: Vec<String>,
        failure: DnsFailure,
    ) -> GuestResult<u64> {
        let failure = match failure {
            DnsFailure::Nxdomain => linux::DnsFailure::NxDomain,
            DnsFailure::Servfail => linux::DnsFailure::ServFail,
            DnsFailure::Timeout => linux::DnsFailure::Timeout,
        };
        self.blocking(move |c| c.network_change(t, Effect::DnsNames { names, failure }))
            .await
    }
}

impl Change for linux::Inverse {
    fn undo(&self, b: &Backends) -> CapResult<()> {
        b.network.undo(self)
    }

    fn is_present(&self, b: &Backends) -> bool {
        // Unknown counts as present: recovery undoes rather than drops what it cannot check.
        b.network.is_present(self).unwrap_or(true)
    }

    fn manual_steps(&self, _: &Backends) -> String {
        linux::Inverse::manual_steps(self)
    }
}
