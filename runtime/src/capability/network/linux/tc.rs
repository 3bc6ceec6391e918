//! tc: bandwidth caps (tbf, or htb with u32 filters), and netem where the kernel has it.
//!
//! A change installs one root qdisc whose handle comes from its tag, and only where the root is
//! the kernel's default; deleting that root gives the interface back exactly its default.

use nix::sched::{CloneFlags, unshare};

use super::Effect;
use super::filter::{Filter, port_masks};
use super::netns::NetNs;
use super::protect::Protected;
use crate::capability::{CapError, CapResult};

/// Root qdiscs the kernel attaches by itself (handle `0:`); anything else was put there by
/// someone and is left alone.
const DEFAULT_ROOTS: [&str; 5] = ["noqueue", "pfifo_fast", "fq_codel", "mq", "fq"];

/// The root qdisc handle (major number) a tag uses, below the kernel's automatic `8000:` range.
pub(super) fn handle_for(tag: &str) -> u16 {
    0x1000 + (super::tag_hash(tag) % 0x7000) as u16
}

/// Whether this kernel can run netem: tries it on the loopback of a throwaway namespace.
pub(super) fn probe_netem() -> bool {
    let probe = std::thread::spawn(|| {
        if unshare(CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        let run = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        run(&["ip", "link", "set", "lo", "up"])
            && run(&[
                "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ])
    });
    probe.join().unwrap_or(false)
}

/// The root qdisc line of an interface.
fn root_line(ns: &NetNs, interface: &str) -> CapResult<Option<String>> {
    let out = ns.try_run("tc", &["qdisc", "show", "dev", interface, "root"], None)?;
    if !out.success {
        return Ok(None);
    }
    Ok(out.stdout.lines().next().map(|l| l.trim().to_string()))
}

/// The default root qdisc line of an interface; `Unsupported` if someone installed a root.
pub(super) fn default_root(ns: &NetNs, interface: &str) -> CapResult<String> {
    let line = root_line(ns, interface)?.ok_or_else(|| {
        CapError::TargetGone(format!("no interface {interface} in the network namespace"))
    })?;
    let mut words = line.split_whitespace().skip(1);
    let kind = words.next().unwrap_or_default();
    let handle = words.next().unwrap_or_default();
    if handle == "0:" && DEFAULT_ROOTS.contains(&kind) {
        Ok(line)
    } else {
        Err(CapError::Unsupported(format!(
            "interface {interface} already has a root qdisc ({line}); only a default root is replaced"
        )))
    }
}

/// Whether the interface's root qdisc is ours.
pub(super) fn root_is(ns: &NetNs, interface: &str, handle: u16) -> CapResult<bool> {
    let ours = format!("{handle:x}:");
    Ok(root_line(ns, interface)?
        .is_some_and(|line| line.split_whitespace().nth(2) == Some(ours.as_str())))
}

/// Deletes the root qdisc if it is ours; the kernel puts the default back.
pub(super) fn delete_root(ns: &NetNs, interface: &str, handle: u16) -> CapResult<()> {
    if root_is(ns, interface, handle)? {
        ns.run("tc", &["qdisc", "del", "dev", interface, "root"], None)?;
    }
    Ok(())
}

/// Caps the interface: tbf for all its traffic, or htb with u32 filters for a selection.
///
/// With `protected` endpoints, htb in both cases (its default class is the cap when everything
/// is capped), and earlier u32 filters send the endpoints' traffic to htb's direct queue
/// (`<handle>:0`), which is never shaped.
pub(super) fn limit_bandwidth(
    ns: &NetNs,
    interface: &str,
    handle: u16,
    filter: &Filter,
    rate_kbit: u64,
    protected: &Protected,
) -> CapResult<()> {
    let rate = format!("{rate_kbit}kbit");
    // 20 ms worth of bytes, and at least ten full-size frames so one packet always fits.
    let burst = (rate_kbit * 1000 / 8 / 50).max(15_140).to_string();
    let h = format!("{handle:x}:");
    if filter.matches_all() && protected.is_empty() {
        let args = [
            "qdisc", "add", "dev", interface, "root", "handle", &h, "tbf", "rate", &rate, "burst",
            &burst, "latency", "50ms",
        ];
        return ns.run("tc", &args, None).map(drop);
    }
    let class = format!("{handle:x}:1");
    let mut qdisc = vec![
        "qdisc", "add", "dev", interface, "root", "handle", &h, "htb",
    ];
    if filter.matches_all() {
        // Unclassified traffic is capped; without a default it would go direct, unshaped.
        qdisc.extend(["default", "1"]);
    }
    ns.run("tc", &qdisc, None)?;
    let class_args = [
        "class", "add", "dev", interface, "parent", &h, "classid", &class, "htb", "rate", &rate,
        "ceil", &rate, "burst", &burst, "cburst", &burst,
    ];
    ns.run("tc", &class_args, None)?;
    spare(ns, interface, &h, protected, &h)?;
    if filter.matches_all() {
        return Ok(());
    }
    add_filters(ns, interface, &h, filter, &class)
}

/// netem options for an effect.
pub(super) fn netem_args(effect: &Effect) -> Vec<String> {
    match *effect {
        Effect::Delay {
            delay_ms,
            jitter_ms,
        } => vec![
            "delay".into(),
            format!("{delay_ms}ms"),
            format!("{jitter_ms}ms"),
        ],
        Effect::Corruption { percent } => vec!["corrupt".into(), format!("{percent}%")],
        Effect::Duplication { percent } => vec!["duplicate".into(), format!("{percent}%")],
        _ => Vec::new(),
    }
}

/// netem on band 4 of a prio root; u32 filters send the selected traffic there and the rest
/// keeps the usual priomap over bands 1 to 3. Earlier filters send the `protected` endpoints'
/// traffic to band 1.
pub(super) fn netem(
    ns: &NetNs,
    interface: &str,
    handle: u16,
    filter: &Filter,
    options: &[String],
    protected: &Protected,
) -> CapResult<()> {
    let h = format!("{handle:x}:");
    let band = format!("{handle:x}:4");
    let prio = [
        "qdisc", "add", "dev", interface, "root", "handle", &h, "prio", "bands", "4",
    ];
    ns.run("tc", &prio, None)?;
    let mut child = vec!["qdisc", "add", "dev", interface, "parent", &band, "netem"];
    child.extend(options.iter().map(String::as_str));
    ns.run("tc", &child, None)?;
    spare(ns, interface, &h, protected, &format!("{handle:x}:1"))?;
    add_filters(ns, interface, &h, filter, &band)
}

/// Filter priorities, by family (IPv4, IPv6): the agent's endpoints are classified before the
/// fault's selection. One priority holds filters of one protocol only.
const SPARE_PRIO: [&str; 2] = ["1", "2"];
const FAULT_PRIO: [&str; 2] = ["3", "4"];

/// u32 filters sending the `protected` endpoints' traffic to `flowid`, ahead of the fault's.
fn spare(
    ns: &NetNs,
    interface: &str,
    parent: &str,
    protected: &Protected,
    flowid: &str,
) -> CapResult<()> {
    for ipv6 in [false, true] {
        for args in protected.u32_matches(ipv6) {
            add_u32(ns, interface, parent, (ipv6, SPARE_PRIO), &args, flowid)?;
        }
    }
    Ok(())
}

/// One u32 filter per destination × protocol × port block, per address family.
fn add_filters(
    ns: &NetNs,
    interface: &str,
    parent: &str,
    filter: &Filter,
    flowid: &str,
) -> CapResult<()> {
    for (args, ipv6) in u32_matches(filter) {
        add_u32(ns, interface, parent, (ipv6, FAULT_PRIO), &args, flowid)?;
    }
    Ok(())
}

/// Adds one u32 filter of a family at that family's priority.
fn add_u32(
    ns: &NetNs,
    interface: &str,
    parent: &str,
    (ipv6, prios): (bool, [&str; 2]),
    matches: &[String],
    flowid: &str,
) -> CapResult<()> {
    let (protocol, prio) = if ipv6 {
        ("ipv6", prios[1])
    } else {
        ("ip", prios[0])
    };
    let mut cmd = vec![
        "filter", "add", "dev", interface, "parent", parent, "protocol", protocol, "prio", prio,
        "u32",
    ];
    cmd.extend(matches.iter().map(String::as_str));
    cmd.extend(["flowid", flowid]);
    ns.run("tc", &cmd, None).map(drop)
}

/// u32 match arguments and the family (`true` for IPv6) of each filter.
fn u32_matches(filter: &Filter) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    for ipv6 in filter.families() {
        let ip = if ipv6 { "ip6" } else { "ip" };
        let destinations: Vec<Option<String>> = match filter.destinations_of(ipv6) {
            d if d.is_empty() => vec![None],
            d => d.iter().map(|c| Some(c.to_string())).collect(),
        };
        let protocols: Vec<Option<u8>> = match filter.l4(ipv6) {
            p if p.is_empty() => vec![None],
            p => p.iter().map(|l| Some(l.number)).collect(),
        };
        let ports: Vec<Option<(u16, u16)>> = if filter.ports.is_empty() {
            vec![None]
        } else {
            filter
                .ports
                .iter()
                .flat_map(|&(a, b)| port_masks(a, b))
                .map(Some)
                .collect()
        };
        for d in &destinations {
            for p in &protocols {
                for port in &ports {
                    let mut args: Vec<String> = Vec::new();
                    if let Some(d) = d {
                        args.extend(["match".into(), ip.into(), "dst".into(), d.clone()]);
                    }
                    if let Some(p) = p {
                        args.extend([
                            "match".into(),
                            ip.into(),
                            "protocol".into(),
                            p.to_string(),
                            "0xff".into(),
                        ]);
                    }
                    if let Some((value, mask)) = port {
                        args.extend([
                            "match".into(),
                            ip.into(),
                            "dport".into(),
                            value.to_string(),
                            format!("{mask:#x}"),
                        ]);
                    }
                    if args.is_empty() {
                        args.extend(["match".into(), "u32".into(), "0".into(), "0".into()]);
                    }
                    out.push((args, ipv6));
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capability::network::linux::{Namespace, Protocol, Traffic};

    #[test]
    fn handles_are_stable_and_below_the_automatic_range() {
        assert_eq!(handle_for("a1"), handle_for("a1"));
        for tag in ["a", "zzzzzzzzzzzz", "0", "abc123"] {
            let h = handle_for(tag);
            assert!((0x1000..0x8000).contains(&h), "{tag}: {h:x}");
        }
    }

    #[test]
    fn u32_filters_cross_destinations_protocols_and_ports() {
        let traffic = Traffic {
            namespace: Namespace::Host,
            interfaces: vec!["eth0".into()],
            destinations: vec!["10.0.0.0/8".into(), "192.168.1.1".into()],
            ports: vec![(80, 81)],
            protocol: Protocol::Any,
        };
        let filter = Filter::parse(&traffic).unwrap();
        let m = u32_matches(&filter);
        // 2 destinations × tcp/udp × one port block, IPv4 only.
        assert_eq!(m.len(), 4);
        assert!(m.iter().all(|(_, v6)| !v6));
        assert_eq!(
            m[0].0.join(" "),
            "match ip dst 10.0.0.0/8 match ip protocol 6 0xff match ip dport 80 0xfffe"
        );
    }
}
