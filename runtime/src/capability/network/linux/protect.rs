//! The agent's own endpoints, kept out of every fault in the agent's network namespace.
//!
//! A fault on the agent's namespace would otherwise cut the agent off from its callers (the API
//! port) and its hubs, and with that the only way to stop the fault from outside. So each
//! backend puts an exception for traffic to and from these endpoints ahead of the fault's own
//! rules, inside the fault's own kernel object (its nftables table, its mangle chain, its root
//! qdisc): undoing the fault removes the exception with it, and nothing else is ever added.
//!
//! An endpoint is TCP `address:port`; traffic *to* it (destination address and port) and *from*
//! it (source address and port) is spared, which covers both the agent's listening socket and
//! its outgoing connections, over loopback too, where the output path sees both directions. An
//! unspecified address (`0.0.0.0:7787`, `[::]:7787`) spares the port on every address of both
//! families.

use std::net::{IpAddr, SocketAddr};

use crate::policy::scope::canonical_ip;

/// One endpoint, canonical: an IPv4-mapped IPv6 address is IPv4; `None` is every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Endpoint {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Endpoint {
    pub fn of(addr: SocketAddr) -> Endpoint {
        let ip = canonical_ip(addr.ip());
        Endpoint {
            ip: (!ip.is_unspecified()).then_some(ip),
            port: addr.port(),
        }
    }

    /// Whether this endpoint concerns the family (`true` for IPv6).
    fn in_family(&self, ipv6: bool) -> bool {
        self.ip.is_none_or(|ip| ip.is_ipv6() == ipv6)
    }
}

/// The endpoints spared by one change; empty outside the agent's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Protected {
    endpoints: Vec<Endpoint>,
}

/// Which side of a packet an exception matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// Destination address and port: traffic to the endpoint.
    To,
    /// Source address and port: traffic from the endpoint.
    From,
}

impl Protected {
    /// The endpoints, deduplicated and in a stable order.
    pub fn new(addrs: &[SocketAddr]) -> Protected {
        let mut endpoints: Vec<Endpoint> = addrs.iter().copied().map(Endpoint::of).collect();
        endpoints.sort();
        endpoints.dedup();
        Protected { endpoints }
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Every (endpoint, side) pair an exception is needed for in a family.
    pub fn matches(&self, ipv6: bool) -> Vec<(Endpoint, Side)> {
        self.endpoints
            .iter()
            .filter(|e| e.in_family(ipv6))
            .flat_map(|&e| [(e, Side::To), (e, Side::From)])
            .collect()
    }

    /// nftables rules accepting the endpoints' traffic, for an `inet` or a `netdev` chain (both
    /// families; a port-only rule matches either).
    pub fn nft_accepts(&self) -> Vec<String> {
        let mut rules = Vec::new();
        let mut seen_any = Vec::new();
        for ipv6 in [false, true] {
            for (e, side) in self.matches(ipv6) {
                let (addr, port) = match side {
                    Side::To => ("daddr", "dport"),
                    Side::From => ("saddr", "sport"),
                };
                let rule = match e.ip {
                    Some(IpAddr::V4(ip)) => format!("ip {addr} {ip} tcp {port} {} accept", e.port),
                    Some(IpAddr::V6(ip)) => format!("ip6 {addr} {ip} tcp {port} {} accept", e.port),
                    None => format!("tcp {port} {} accept", e.port),
                };
                // A port-only rule belongs to both families; write it once.
                if e.ip.is_none() {
                    if seen_any.contains(&rule) {
                        continue;
                    }
                    seen_any.push(rule.clone());
                }
                rules.push(rule);
            }
        }
        rules
    }

    /// iptables arguments (after `-A <chain>`) returning the endpoints' traffic of one family
    /// from the chain before it is queued.
    pub fn iptables_returns(&self, ipv6: bool) -> Vec<Vec<String>> {
        self.matches(ipv6)
            .into_iter()
            .map(|(e, side)| {
                let (addr, port) = match side {
                    Side::To => ("-d", "--dport"),
                    Side::From => ("-s", "--sport"),
                };
                let mut args = Vec::new();
                if let Some(ip) = e.ip {
                    args.extend([addr.to_string(), ip.to_string()]);
                }
                args.extend([
                    "-p".into(),
                    "tcp".into(),
                    port.into(),
                    e.port.to_string(),
                    "-j".into(),
                    "RETURN".into(),
                ]);
                args
            })
            .collect()
    }

    /// tc u32 match arguments selecting the endpoints' traffic of one family. Like every u32
    /// port match they read the transport header right after a header without options.
    pub fn u32_matches(&self, ipv6: bool) -> Vec<Vec<String>> {
        let ip = if ipv6 { "ip6" } else { "ip" };
        self.matches(ipv6)
            .into_iter()
            .map(|(e, side)| {
                let (addr, port) = match side {
                    Side::To => ("dst", "dport"),
                    Side::From => ("src", "sport"),
                };
                let mut args: Vec<String> = Vec::new();
                if let Some(a) = e.ip {
                    let prefix = if ipv6 { 128 } else { 32 };
                    args.extend([
                        "match".into(),
                        ip.into(),
                        addr.into(),
                        format!("{a}/{prefix}"),
                    ]);
                }
                args.extend([
                    "match".into(),
                    ip.into(),
                    "protocol".into(),
                    "6".into(),
                    "0xff".into(),
                    "match".into(),
                    ip.into(),
                    port.into(),
                    e.port.to_string(),
                    "0xffff".into(),
                ]);
                args
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn endpoints_are_canonical_and_deduplicated() {
        let p = Protected::new(&addrs(&[
            "127.0.0.1:7787",
            "[::ffff:127.0.0.1]:7787",
            "0.0.0.0:9000",
            "[::]:9000",
        ]));
        assert_eq!(
            p.endpoints,
            vec![
                Endpoint {
                    ip: None,
                    port: 9000
                },
                Endpoint {
                    ip: Some("127.0.0.1".parse().unwrap()),
                    port: 7787
                },
            ]
        );
    }

    #[test]
    fn nft_rules_spare_both_directions_once() {
        let p = Protected::new(&addrs(&["10.0.0.5:443", "[::1]:7787", "0.0.0.0:9000"]));
        assert_eq!(
            p.nft_accepts(),
            vec![
                "tcp dport 9000 accept",
                "tcp sport 9000 accept",
                "ip daddr 10.0.0.5 tcp dport 443 accept",
                "ip saddr 10.0.0.5 tcp sport 443 accept",
                "ip6 daddr ::1 tcp dport 7787 accept",
                "ip6 saddr ::1 tcp sport 7787 accept",
            ]
        );
        assert!(Protected::new(&[]).nft_accepts().is_empty());
    }

    #[test]
    fn iptables_and_u32_renderings_follow_the_family() {
        let p = Protected::new(&addrs(&["10.0.0.5:443", "[::1]:7787"]));
        let v4: Vec<String> = p
            .iptables_returns(false)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            v4,
            vec![
                "-d 10.0.0.5 -p tcp --dport 443 -j RETURN",
                "-s 10.0.0.5 -p tcp --sport 443 -j RETURN",
            ]
        );
        let v6: Vec<String> = p.u32_matches(true).iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            v6,
            vec![
                "match ip6 dst ::1/128 match ip6 protocol 6 0xff match ip6 dport 7787 0xffff",
                "match ip6 src ::1/128 match ip6 protocol 6 0xff match ip6 sport 7787 0xffff",
            ]
        );
    }
}
