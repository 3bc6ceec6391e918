//! Network faults, through the host's `network` capability.

pub use crate::bindings::faultline::contract::network::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::network::{
    add_corruption, add_delay, add_duplication, add_loss, blackhole, fail_dns, fail_dns_names,
    limit_bandwidth, reject,
};

use crate::Error as ContractError;
use schemars::JsonSchema;
use serde::Deserialize;
use std::net::IpAddr;

/// Parameters that pick traffic: egress on `interfaces` in one network namespace, optionally
/// only to some destinations, ports and protocol. Flatten it into a fault's parameters with
/// `#[serde(flatten)]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct TrafficParams {
    /// Network namespace by name (`ip netns`), or `host` for the agent's own. Give this or
    /// `pid`.
    pub netns: Option<String>,
    /// The network namespace of this process. Give this or `netns`.
    pub pid: Option<u32>,
    /// Interfaces whose egress is affected, e.g. `["eth0"]`.
    pub interfaces: Vec<String>,
    /// Destination CIDRs (`10.0.0.0/8`, `::1/128`) or addresses; empty means every destination.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Destination ports or ranges (`"80"`, `"8000-8100"`); empty means every port.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Transport protocol to match.
    #[serde(default)]
    pub protocol: ProtocolParam,
}

/// Transport protocol a fault matches, as operators write it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolParam {
    /// Every protocol (with ports: TCP and UDP).
    #[default]
    Any,
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// ICMP only (ICMPv6 for IPv6 destinations); takes no ports.
    Icmp,
}

impl TrafficParams {
    /// The host's `traffic` these parameters name, or why they name none.
    pub fn traffic(&self) -> Result<Traffic, ContractError> {
        let namespace = match (&self.netns, self.pid) {
            (Some(name), None) if name == "host" => Namespace::Host,
            (Some(name), None) if valid_name(name, 255) => Namespace::Named(name.clone()),
            (Some(name), None) => {
                return Err(ContractError::invalid(format!(
                    "`netns` {name:?} is not a namespace name (no `/`, no spaces, not `.` or `..`)"
                )));
            }
            (None, Some(pid)) => Namespace::Pid(pid),
            _ => {
                return Err(ContractError::invalid(
                    "give exactly one of `netns` (a name, or \"host\") or `pid`",
                ));
            }
        };
        if self.interfaces.is_empty() {
            return Err(ContractError::invalid(
                "`interfaces` must name at least one interface",
            ));
        }
        if let Some(bad) = self.interfaces.iter().find(|i| !valid_name(i, 15)) {
            return Err(ContractError::invalid(format!(
                "interface {bad:?} is not an interface name (1 to 15 characters, no `/` or spaces)"
            )));
        }
        for d in &self.destinations {
            check_cidr(d)?;
        }
        let ports = self
            .ports
            .iter()
            .map(|p| port_range(p))
            .collect::<Result<Vec<_>, _>>()?;
        if self.protocol == ProtocolParam::Icmp && !ports.is_empty() {
            return Err(ContractError::invalid(
                "`ports` cannot be combined with protocol `icmp`",
            ));
        }
        Ok(Traffic {
            namespace,
            interfaces: self.interfaces.clone(),
            destinations: self.destinations.clone(),
            ports,
            protocol: match self.protocol {
                ProtocolParam::Any => Protocol::Any,
                ProtocolParam::Tcp => Protocol::Tcp,
                ProtocolParam::Udp => Protocol::Udp,
                ProtocolParam::Icmp => Protocol::Icmp,
            },
        })
    }
}

/// Checks a percentage parameter: more than 0, at most 100.
pub fn check_percent(name: &str, percent: f32) -> Result<(), ContractError> {
    if percent.is_finite() && percent > 0.0 && percent <= 100.0 {
        Ok(())
    } else {
        Err(ContractError::invalid(format!(
            "`{name}` must be more than 0 and at most 100, not {percent}"
        )))
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

fn check_cidr(text: &str) -> Result<(), ContractError> {
    let bad = || ContractError::invalid(format!("destination {text:?} is not an address or CIDR"));
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix {
        Some(p) if p > max => Err(bad()),
        _ => Ok(()),
    }
}

fn port_range(text: &str) -> Result<PortRange, ContractError> {
    let bad = || {
        ContractError::invalid(format!(
            "port {text:?} is not a port (1-65535) or a range like \"8000-8100\""
        ))
    };
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if first > last {
        return Err(bad());
    }
    Ok(PortRange { first, last })
}

fn default_percent() -> f32 {
    10.0
}

/// Parameters of a fault that disturbs a share of packets.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PercentParams {
    /// The traffic to disturb.
    #[serde(flatten)]
    pub traffic: TrafficParams,
    /// Share of matching packets affected, more than 0 and at most 100.
    #[serde(default = "default_percent")]
    pub percent: f32,
}

/// An effect on a share of packets (loss, corruption, duplication). Implement it on a unit
/// struct and export `PercentFault<YourEffect>` with `export_fault!`: parameters, validation,
/// journalled change and revert come with it.
pub trait PercentEffect {
    /// The fault's name, for log lines.
    const NAME: &'static str;
    /// One line on what the fault breaks.
    const SUMMARY: &'static str;
    /// Asks the host for the effect; returns the change to undo.
    fn apply(traffic: &Traffic, percent: f32) -> Result<crate::rollback::Change, ContractError>;
}

/// A fault that applies a [`PercentEffect`] for its duration and undoes it on revert.
pub struct PercentFault<E>(std::marker::PhantomData<E>);

impl<E: PercentEffect> crate::Fault for PercentFault<E> {
    type Params = PercentParams;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = E::SUMMARY;
    const CAPABILITIES: &'static [crate::Capability] = &[
        crate::Capability::Log,
        crate::Capability::Rollback,
        crate::Capability::Network,
    ];

    fn validate(params: &PercentParams) -> Result<(), ContractError> {
        params.traffic.traffic()?;
        check_percent("percent", params.percent)
    }

    fn inject(params: PercentParams, _: &crate::InjectContext) -> Result<Vec<u64>, ContractError> {
        let traffic = params.traffic.traffic()?;
        let change = E::apply(&traffic, params.percent)?;
        crate::log::info(format!(
            "{}: {}% of egress on {:?}",
            E::NAME,
            params.percent,
            traffic.interfaces
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), ContractError> {
        crate::rollback::undo_all(&changes)
    }
}
