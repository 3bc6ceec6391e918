//! The parsed traffic selector, shared by the nftables, iptables and tc u32 renderings.

use ipnet::IpNet;

use super::{Protocol, Traffic};
use crate::capability::{CapError, CapResult};
use crate::policy::scope::parse_net;

/// A destination network with its host bits cleared (`ipnet`, displayed `10.0.0.0/8`).
pub(super) type Cidr = IpNet;

/// Parses `10.0.0.0/8`, `::1/128` or a bare address; host bits are cleared.
fn parse_cidr(text: &str) -> CapResult<Cidr> {
    parse_net(text).ok_or_else(|| CapError::Invalid(format!("destination {text:?} is not a cidr")))
}

/// A transport protocol a rule matches, by name and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct L4 {
    pub name: &'static str,
    pub number: u8,
}

const TCP: L4 = L4 {
    name: "tcp",
    number: 6,
};
const UDP: L4 = L4 {
    name: "udp",
    number: 17,
};
const ICMP: L4 = L4 {
    name: "icmp",
    number: 1,
};
const ICMPV6: L4 = L4 {
    name: "ipv6-icmp",
    number: 58,
};

/// A validated [`Traffic`] without its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Filter {
    pub interfaces: Vec<String>,
    pub destinations: Vec<Cidr>,
    pub ports: Vec<(u16, u16)>,
    pub protocol: Protocol,
}

impl Filter {
    pub fn parse(traffic: &Traffic) -> CapResult<Filter> {
        if traffic.interfaces.is_empty() {
            return Err(CapError::Invalid("no interface given".to_string()));
        }
        for interface in &traffic.interfaces {
            validate_interface(interface)?;
        }
        let mut interfaces = traffic.interfaces.clone();
        interfaces.sort();
        interfaces.dedup();
        let mut destinations = traffic
            .destinations
            .iter()
            .map(|d| parse_cidr(d))
            .collect::<CapResult<Vec<_>>>()?;
        destinations.dedup();
        for &(first, last) in &traffic.ports {
            if first > last {
                return Err(CapError::Invalid(format!(
                    "port range {first}-{last} is backwards"
                )));
            }
        }
        if !traffic.ports.is_empty() && traffic.protocol == Protocol::Icmp {
            return Err(CapError::Invalid(
                "ports need protocol tcp, udp or any, not icmp".to_string(),
            ));
        }
        Ok(Filter {
            interfaces,
            destinations,
            ports: traffic.ports.clone(),
            protocol: traffic.protocol,
        })
    }

    /// The same selector narrowed to DNS: port 53, UDP and TCP unless one was asked for.
    pub fn dns(&self) -> Filter {
        Filter {
            ports: vec![(53, 53)],
            ..self.clone()
        }
    }

    /// The same selector narrowed to DNS over UDP: port 53, UDP.
    pub fn dns_udp(&self) -> Filter {
        Filter {
            ports: vec![(53, 53)],
            protocol: Protocol::Udp,
            ..self.clone()
        }
    }

    /// Whether everything on the interfaces matches (no destination, port or protocol).
    pub fn matches_all(&self) -> bool {
        self.destinations.is_empty() && self.ports.is_empty() && self.protocol == Protocol::Any
    }

    /// The address families concerned, `false` for IPv4 and `true` for IPv6.
    pub fn families(&self) -> Vec<bool> {
        if self.destinations.is_empty() {
            return vec![false, true];
        }
        let mut families = Vec::new();
        if self.destinations.iter().any(|d| matches!(d, IpNet::V4(_))) {
            families.push(false);
        }
        if self.destinations.iter().any(|d| matches!(d, IpNet::V6(_))) {
            families.push(true);
        }
        families
    }

    /// Destinations of one family.
    pub fn destinations_of(&self, ipv6: bool) -> Vec<Cidr> {
        self.destinations
            .iter()
            .filter(|d| matches!(d, IpNet::V6(_)) == ipv6)
            .copied()
            .collect()
    }

    /// Transport protocols to match in one family; empty means any.
    pub fn l4(&self, ipv6: bool) -> Vec<L4> {
        match self.protocol {
            Protocol::Any if self.ports.is_empty() => vec![],
            Protocol::Any => vec![TCP, UDP],
            Protocol::Tcp => vec![TCP],
            Protocol::Udp => vec![UDP],
            Protocol::Icmp if ipv6 => vec![ICMPV6],
            Protocol::Icmp => vec![ICMP],
        }
    }
}

fn validate_interface(name: &str) -> CapResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(CapError::Invalid(format!(
            "interface name {name:?} is not valid"
        )))
    }
}

/// Splits an inclusive port range into value/mask pairs, as u32 filters need.
pub(super) fn port_masks(first: u16, last: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = u32::from(first);
    let end = u32::from(last);
    while start <= end {
        // The largest aligned block starting at `start` that stays within the range.
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros()
        };
        while start + size - 1 > end {
            size >>= 1;
        }
        let mask = (!(size - 1)) & 0xffff;
        out.push((start as u16, mask as u16));
        start += size;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalised() {
        let c = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let c = parse_cidr("::1").unwrap();
        assert_eq!(c.to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nonsense").is_err());
        assert!(parse_cidr("10.0.0.0/x").is_err());
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    fn covered(masks: &[(u16, u16)]) -> Vec<u16> {
        (0..=u16::MAX)
            .filter(|p| masks.iter().any(|&(v, m)| p & m == v))
            .collect()
    }

    #[test]
    fn port_masks_cover_exactly_the_range() {
        for (first, last) in [
            (0, 65535),
            (53, 53),
            (1000, 2000),
            (1, 65534),
            (0, 0),
            (80, 81),
        ] {
            let masks = port_masks(first, last);
            assert_eq!(covered(&masks), (first..=last).collect::<Vec<_>>());
        }
        assert_eq!(port_masks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_masks(53, 53), vec![(53, 0xffff)]);
    }
}
