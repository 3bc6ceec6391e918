//! nftables: loss, blackhole, reject and DNS failure in an `inet` output table, duplication in
//! a `netdev` egress table. Each change is one table named after its tag, loaded atomically
//! with `nft -f` and removed whole.

use super::filter::Filter;
use super::netns::NetNs;
use super::protect::Protected;
use crate::capability::CapResult;

/// What a matching packet meets.
pub(super) enum Action {
    /// Dropped with this probability in percent.
    Drop(f32),
    /// Rejected: TCP reset for TCP, ICMP port unreachable otherwise.
    Reject,
}

/// Loads the `inet` table of a change; the `protected` endpoints' traffic is accepted first.
pub(super) fn apply(
    ns: &NetNs,
    tag: &str,
    filter: &Filter,
    action: Action,
    protected: &Protected,
) -> CapResult<()> {
    let mut rules = protected.nft_accepts();
    for ipv6 in filter.families() {
        let m = matcher(filter, ipv6, true);
        match action {
            Action::Drop(percent) => rules.push(format!("{m}{}drop", chance(percent))),
            Action::Reject => {
                let l4 = filter.l4(ipv6);
                if l4.is_empty() || l4.iter().any(|p| p.name == "tcp") {
                    let tcp_only = Filter {
                        protocol: super::Protocol::Tcp,
                        ..filter.clone()
                    };
                    rules.push(format!(
                        "{}reject with tcp reset",
                        matcher(&tcp_only, ipv6, true)
                    ));
                }
                rules.push(format!("{m}reject with icmpx type port-unreachable"));
            }
        }
    }
    let script = format!(
        "table inet faultline_{tag} {{\n  chain output {{\n    type filter hook output priority filter; policy accept;\n{}  }}\n}}\n",
        indent(&rules)
    );
    ns.run("nft", &["-f", "-"], Some(&script)).map(drop)
}

/// The packet mark bit that tells a copy made by duplication from its original.
const DUP_MARK: u32 = 0x0010_0000;

/// Loads the `netdev` table that duplicates `percent` of the matching packets leaving each
/// interface (egress hook, Linux 5.16 or later); the `protected` endpoints' traffic is accepted
/// first.
pub(super) fn duplicate(
    ns: &NetNs,
    tag: &str,
    filter: &Filter,
    percent: f32,
    protected: &Protected,
) -> CapResult<()> {
    let mut chains = String::new();
    for (i, interface) in filter.interfaces.iter().enumerate() {
        let mut rules = protected.nft_accepts();
        rules.extend(filter.families().into_iter().map(|ipv6| {
                // The copy goes through this hook again: the mark bit keeps it from being
                // copied in turn, and is cleared again on the original right after.
                format!(
                    "meta mark and {DUP_MARK:#x} == 0 {}{}meta mark set meta mark or {DUP_MARK:#x} dup to \"{interface}\" meta mark set meta mark and {:#x}",
                    matcher(filter, ipv6, false),
                    chance(percent),
                    !DUP_MARK
                )
        }));
        chains.push_str(&format!(
            "  chain egress{i} {{\n    type filter hook egress device \"{interface}\" priority filter; policy accept;\n{}  }}\n",
            indent(&rules)
        ));
    }
    let script = format!("table netdev faultline_{tag} {{\n{chains}}}\n");
    ns.run("nft", &["-f", "-"], Some(&script)).map(drop)
}

/// Whether the namespace has this table.
pub(super) fn has_table(ns: &NetNs, family: &str, name: &str) -> CapResult<bool> {
    let tables = ns.run("nft", &["list", "tables", family], None)?;
    let wanted = format!("table {family} {name}");
    Ok(tables.lines().any(|l| l.trim() == wanted))
}

/// Deletes the table if it is there.
pub(super) fn delete_table(ns: &NetNs, family: &str, name: &str) -> CapResult<()> {
    if has_table(ns, family, name)? {
        ns.run("nft", &["delete", "table", family, name], None)?;
    }
    Ok(())
}

fn chance(percent: f32) -> String {
    if percent >= 100.0 {
        String::new()
    } else {
        // Hundredths of a percent.
        format!(
            "numgen random mod 10000 < {} ",
            (percent * 100.0).round() as u32
        )
    }
}

/// The match part of a rule, ending with a space: interfaces (inet only; a netdev chain is
/// bound to one), family or destinations, protocols, ports.
fn matcher(filter: &Filter, ipv6: bool, inet: bool) -> String {
    let mut m = String::new();
    if inet {
        let names: Vec<String> = filter
            .interfaces
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect();
        m.push_str(&format!("oifname {{ {} }} ", names.join(", ")));
    }
    let destinations = filter.destinations_of(ipv6);
    let (ip, nfproto, protocol) = if ipv6 {
        ("ip6", "ipv6", "ip6")
    } else {
        ("ip", "ipv4", "ip")
    };
    if destinations.is_empty() {
        if inet {
            m.push_str(&format!("meta nfproto {nfproto} "));
        } else {
            m.push_str(&format!("meta protocol {protocol} "));
        }
    } else {
        let list: Vec<String> = destinations.iter().map(|d| d.to_string()).collect();
        m.push_str(&format!("{ip} daddr {{ {} }} ", list.join(", ")));
    }
    let l4 = filter.l4(ipv6);
    if !l4.is_empty() {
        let names: Vec<&str> = l4.iter().map(|p| p.name).collect();
        m.push_str(&format!("meta l4proto {{ {} }} ", names.join(", ")));
    }
    if !filter.ports.is_empty() {
        let ports: Vec<String> = filter
            .ports
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        m.push_str(&format!("th dport {{ {} }} ", ports.join(", ")));
    }
    m
}

fn indent(rules: &[String]) -> String {
    rules.iter().map(|r| format!("    {r}\n")).collect()
}
