//! Delay, corruption and DNS failure by name without netem: iptables-legacy sends the matching
//! packets to an NFQUEUE, and a worker thread that opened the queue inside the namespace holds,
//! alters, drops or answers them (see [`super::dns`]).
//!
//! The rules carry `--queue-bypass`: if the worker is gone (agent crashed), packets flow
//! unchanged instead of being dropped, and the leftover chain is harmless until undo removes it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use rand::Rng;

use super::dns::{Decision, Responder, Rule};
use super::filter::Filter;
use super::netns::NetNs;
use super::protect::Protected;
use crate::capability::{CapError, CapResult};

/// What the worker does to each packet it receives.
#[derive(Debug, Clone)]
pub(super) enum Mode {
    /// Holds it for `delay_ms` ± `jitter_ms`.
    Delay { delay_ms: u32, jitter_ms: u32 },
    /// Flips one random bit after the IP header; the rules already chose which packets.
    Corrupt,
    /// Drops or answers DNS queries for the rule's names; everything else passes.
    Dns(Rule),
}

/// Packets the kernel may hold for the worker; beyond that they pass unchanged (fail-open).
const QUEUE_MAX_LEN: u32 = 16_384;
/// How often the worker looks for new packets and due verdicts.
const TICK: Duration = Duration::from_millis(1);

/// A running NFQUEUE worker.
pub(super) struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    queue_num: u16,
}

impl Worker {
    /// Starts a worker in the namespace on a free queue near the tag's, skipping `avoid`.
    pub fn start(ns: &NetNs, tag: &str, avoid: &[u16], mode: Mode) -> CapResult<Worker> {
        let file = ns.try_clone_file()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = mpsc::channel::<CapResult<u16>>();
        let first = queue_base(tag);
        let avoid = avoid.to_vec();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("faultline-nfq-{tag}"))
            .spawn(move || {
                if let Some(file) = file
                    && let Err(e) = setns(file, CloneFlags::CLONE_NEWNET)
                {
                    let _ = ready.send(Err(CapError::Failed(format!(
                        "failed to enter the network namespace: {e}"
                    ))));
                    return;
                }
                // Raw sockets are opened here, in the namespace, before the queue takes packets.
                let responder = match &mode {
                    Mode::Dns(_) => match Responder::open() {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    },
                    _ => None,
                };
                match open(first, &avoid, &mode) {
                    Ok((queue, num)) => {
                        let _ = ready.send(Ok(num));
                        serve(queue, num, &mode, responder.as_ref(), &stopping);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })
            .map_err(|e| CapError::Failed(format!("failed to start the nfqueue worker: {e}")))?;
        let queue_num = started
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| CapError::Failed("the nfqueue worker did not start".to_string()))
            .and_then(|r| r);
        let worker = Worker {
            stop,
            thread: Some(thread),
            queue_num: queue_num.as_ref().copied().unwrap_or(0),
        };
        match queue_num {
            Ok(_) => Ok(worker),
            Err(e) => {
                worker.stop();
                Err(e)
            }
        }
    }

    /// The queue number it serves.
    pub fn queue_num(&self) -> u16 {
        self.queue_num
    }

    /// Accepts every packet it holds, unbinds and ends the thread.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, AtomicOrdering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The first queue number tried for a tag, spread over 1024..=64511.
fn queue_base(tag: &str) -> u16 {
    1024 + (super::tag_hash(tag) % 63_488) as u16
}

fn open(first: u16, avoid: &[u16], mode: &Mode) -> CapResult<(nfq::Queue, u16)> {
    let mut queue = nfq::Queue::open().map_err(|e| {
        CapError::Unsupported(format!(
            "cannot open an nfqueue netlink socket (kernel without nfnetlink_queue?): {e}"
        ))
    })?;
    let config = |e: std::io::Error| CapError::Failed(format!("failed to configure nfqueue: {e}"));
    for num in (0..64u16).map(|i| first.wrapping_add(i)) {
        if avoid.contains(&num) {
            continue;
        }
        match queue.bind(num) {
            Ok(()) => {}
            // Bound by another socket: try the next number.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EBUSY)) => {
                continue;
            }
            Err(e) => {
                return Err(CapError::Failed(format!(
                    "failed to bind nfqueue {num}: {e}"
                )));
            }
        }
        queue
            .set_queue_max_len(num, QUEUE_MAX_LEN)
            .map_err(config)?;
        queue.set_fail_open(num, true).map_err(config)?;
        if let Mode::Delay { .. } = mode {
            // Metadata only, and whole GSO packets: holding needs no copy of the payload.
            queue.set_copy_range(num, 0).map_err(config)?;
            queue.set_recv_gso(num, true).map_err(config)?;
        }
        queue.set_nonblocking(true);
        return Ok((queue, num));
    }
    Err(CapError::Failed(
        "no free nfqueue number near the tag's".to_string(),
    ))
}

/// A packet waiting for its verdict.
struct Held {
    due: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    // Reversed: the heap's top is the earliest due.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

fn serve(
    mut queue: nfq::Queue,
    num: u16,
    mode: &Mode,
    responder: Option<&Responder>,
    stop: &AtomicBool,
) {
    let mut rng = rand::thread_rng();
    let mut held = BinaryHeap::new();
    let mut seq = 0u64;
    while !stop.load(AtomicOrdering::Relaxed) {
        loop {
            match queue.recv() {
                Ok(mut msg) => match mode {
                    Mode::Corrupt => {
                        corrupt(msg.get_payload_mut(), &mut rng);
                        let _ = queue.verdict(msg);
                    }
                    Mode::Dns(rule) => {
                        let decision = rule.decide(msg.get_payload());
                        msg.set_verdict(match decision {
                            Decision::Pass => nfq::Verdict::Accept,
                            Decision::Drop | Decision::Answer { .. } => nfq::Verdict::Drop,
                        });
                        let _ = queue.verdict(msg);
                        if let (Decision::Answer { packet, to }, Some(responder)) =
                            (decision, responder)
                            && let Err(e) = responder.send(&packet, to)
                        {
                            tracing::warn!("nfqueue {num}: failed to answer a dns query: {e}");
                        }
                    }
                    &Mode::Delay {
                        delay_ms,
                        jitter_ms,
                    } => {
                        let lo = i64::from(delay_ms) - i64::from(jitter_ms);
                        let hi = i64::from(delay_ms) + i64::from(jitter_ms);
                        let ms = rng.gen_range(lo..=hi).max(0) as u64;
                        held.push(Held {
                            due: Instant::now() + Duration::from_millis(ms),
                            seq,
                            msg,
                        });
                        seq += 1;
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("nfqueue {num}: failed to receive a packet: {e}");
                    break;
                }
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now) {
            if let Some(h) = held.pop() {
                let _ = queue.verdict(h.msg);
            }
        }
        let wait = held
            .peek()
            .map_or(TICK, |h| h.due.saturating_duration_since(now).min(TICK));
        std::thread::sleep(wait);
    }
    // Unbinding drops what is still queued, so release everything first.
    for h in held.into_vec() {
        let _ = queue.verdict(h.msg);
    }
    let _ = queue.unbind(num);
}

/// Flips one random bit after the IP header; checksums are left wrong on purpose, as on a
/// noisy wire.
fn corrupt(packet: &mut [u8], rng: &mut impl Rng) {
    let header = match packet.first() {
        Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
        Some(b) if b >> 4 == 6 => 40,
        _ => return,
    };
    if packet.len() > header {
        let i = rng.gen_range(header..packet.len());
        if let Some(byte) = packet.get_mut(i) {
            *byte ^= 1 << rng.gen_range(0..8);
        }
    }
}

fn tool(ipv6: bool) -> &'static str {
    if ipv6 {
        "ip6tables-legacy"
    } else {
        "iptables-legacy"
    }
}

/// `Unsupported` unless the iptables-legacy tools this filter needs are installed.
pub(super) fn check_tools(ns: &NetNs, filter: &Filter) -> CapResult<()> {
    for ipv6 in filter.families() {
        ns.run(tool(ipv6), &["--version"], None)?;
    }
    Ok(())
}

/// Queue numbers that existing iptables rules in the namespace already send to.
pub(super) fn queues_in_use(ns: &NetNs) -> CapResult<Vec<u16>> {
    let mut used = Vec::new();
    for ipv6 in [false, true] {
        let save = format!("{}-save", tool(ipv6));
        let Ok(out) = ns.try_run(&save, &[], None) else {
            continue;
        };
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        for pair in words.windows(2) {
            match pair {
                ["--queue-num", n] => used.extend(n.parse::<u16>().ok()),
                ["--queue-balance", range] => {
                    if let Some((a, b)) = range.split_once(':')
                        && let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    {
                        used.extend(a..=b);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(used)
}

/// Creates the tag's mangle chain with one NFQUEUE rule per interface × protocol × port
/// range, then hooks it into `OUTPUT`. `percent` samples packets (corruption). The `protected`
/// endpoints' traffic returns from the chain first.
pub(super) fn add_rules(
    ns: &NetNs,
    tag: &str,
    filter: &Filter,
    percent: Option<f32>,
    queue_num: u16,
    protected: &Protected,
) -> CapResult<()> {
    let chain = format!("faultline_{tag}");
    let queue = queue_num.to_string();
    let probability = percent
        .filter(|p| *p < 100.0)
        .map(|p| format!("{:.4}", f64::from(p) / 100.0));
    for ipv6 in filter.families() {
        let iptables = tool(ipv6);
        ns.run(iptables, &["-w", "-t", "mangle", "-N", &chain], None)?;
        // The agent's own endpoints leave the chain before any rule can queue them.
        for spared in protected.iptables_returns(ipv6) {
            let mut args = vec!["-w", "-t", "mangle", "-A", &chain];
            args.extend(spared.iter().map(String::as_str));
            ns.run(iptables, &args, None)?;
        }
        let destinations: Vec<String> = filter
            .destinations_of(ipv6)
            .iter()
            .map(|d| d.to_string())
            .collect();
        let destinations = destinations.join(",");
        let protocols: Vec<Option<&str>> = match filter.l4(ipv6) {
            p if p.is_empty() => vec![None],
            p => p.iter().map(|l| Some(l.name)).collect(),
        };
        let ports: Vec<Option<String>> = if filter.ports.is_empty() {
            vec![None]
        } else {
            filter
                .ports
                .iter()
                .map(|&(a, b)| Some(format!("{a}:{b}")))
                .collect()
        };
        for interface in &filter.interfaces {
            for protocol in &protocols {
                for port in &ports {
                    let mut args = vec!["-w", "-t", "mangle", "-A", &chain, "-o", interface];
                    if !destinations.is_empty() {
                        args.extend(["-d", &destinations]);
                    }
                    if let Some(p) = protocol {
                        args.extend(["-p", p]);
                    }
                    if let Some(port) = port {
                        args.extend(["--dport", port]);
                    }
                    if let Some(probability) = &probability {
                        args.extend([
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            probability,
                        ]);
                    }
                    args.extend(["-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"]);
                    ns.run(iptables, &args, None)?;
                }
            }
        }
        // The jump last: nothing is queued before every rule is in place.
        ns.run(
            iptables,
            &["-w", "-t", "mangle", "-A", "OUTPUT", "-j", &chain],
            None,
        )?;
    }
    Ok(())
}

/// Whether the namespace has this mangle chain.
pub(super) fn has_chain(ns: &NetNs, ipv6: bool, chain: &str) -> CapResult<bool> {
    let save = format!("{}-save", tool(ipv6));
    let out = match ns.try_run(&save, &["-t", "mangle"], None) {
        Ok(out) => out,
        // Without the tools nothing of ours can be there.
        Err(CapError::Unsupported(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let wanted = format!(":{chain} ");
    Ok(out.stdout.lines().any(|l| l.starts_with(&wanted)))
}

/// Unhooks, flushes and deletes the chain if it is there.
pub(super) fn delete_chain(ns: &NetNs, ipv6: bool, chain: &str) -> CapResult<()> {
    if !has_chain(ns, ipv6, chain)? {
        return Ok(());
    }
    let iptables = tool(ipv6);
    let jump = ["-w", "-t", "mangle", "-C", "OUTPUT", "-j", chain];
    while ns.try_run(iptables, &jump, None)?.success {
        ns.run(
            iptables,
            &["-w", "-t", "mangle", "-D", "OUTPUT", "-j", chain],
            None,
        )?;
    }
    ns.run(iptables, &["-w", "-t", "mangle", "-F", chain], None)?;
    ns.run(iptables, &["-w", "-t", "mangle", "-X", chain], None)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn corruption_leaves_the_ip_header_alone() {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let original: Vec<u8> = [0x45u8].into_iter().chain(1..40u8).collect();
            let mut packet = original.clone();
            corrupt(&mut packet, &mut rng);
            assert_eq!(packet[..20], original[..20]);
            let flipped: u32 = packet
                .iter()
                .zip(&original)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, 1);
        }
    }
}
