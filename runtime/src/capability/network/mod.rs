//! The `network` capability: delay, loss, corruption, duplication, bandwidth, blackhole,
//! reject and DNS failure, in a chosen network namespace.
//!
//! Scope, from the policy's network grants: the namespace (`host`, `pid` for a process in the
//! process scope, `named:<glob>`), every interface (globs), every destination CIDR (inside a
//! granted one; an empty grant list allows any) and every port range (likewise).

#[cfg(target_os = "linux")]
pub mod linux;

use super::{Backends, CapError, CapResult, Change, Context, GuestResult, Inverse};
use crate::contract::network::{Host, Namespace, Protocol, Traffic};
use crate::policy::{glob_match, parse_cidr, parse_port_range};
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
        let fits = |s: &crate::policy::NetworkScope| {
            let ns_ok = s.namespaces.iter().any(|g| match &t.namespace {
                Namespace::Host => g == "host",
                Namespace::Pid(_) => g == "pid",
                Namespace::Named(n) => g
                    .strip_prefix("named:")
                    .is_some_and(|glob| glob_match(glob, n)),
            });
            let ifaces_ok = !t.interfaces.is_empty()
                && t.interfaces
                    .iter()
                    .all(|i| s.interfaces.iter().any(|g| glob_match(g, i)));
            let granted: Vec<_> = s
                .destinations
                .iter()
                .filter_map(|d| parse_cidr(d).ok())
                .collect();
            let dest_ok = granted.is_empty()
                || (!t.destinations.is_empty()
                    && t.destinations.iter().all(|d| {
                        parse_cidr(d).is_ok_and(|d| granted.iter().any(|g| g.contains(&d)))
                    }));
            let ports: Vec<_> = s
                .ports
                .iter()
                .filter_map(|p| parse_port_range(p).ok())
                .collect();
            let ports_ok = ports.is_empty()
                || (!t.ports.is_empty()
                    && t.ports
                        .iter()
                        .all(|r| ports.iter().any(|(a, b)| *a <= r.first && r.last <= *b)));
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
        self.network_scope(&t)?;
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
        let summary = format!("network {effect:?} on {:?} (tag {tag})", traffic.interfaces);
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
