//! A small authoritative DNS server in namespace `b` (every name has the A record
//! [`ANSWER`]), and `dig` run in namespace `a` as the real resolver that queries it.

// Test support: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Packet, PacketFlag, QTYPE, ResourceRecord, TYPE};

use crate::netns::{B_ADDR, NetPair};

/// The address every name resolves to.
pub const ANSWER: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);

/// A DNS server on `b`:53 (UDP); stops when dropped.
pub struct DnsServer {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts it in namespace `b` of the pair.
    pub fn start(pair: &NetPair) -> DnsServer {
        let socket = pair.within(&pair.b, || UdpSocket::bind((B_ADDR, 53)).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (stopping, counted) = (Arc::clone(&stop), Arc::clone(&queries));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let mut reply = Packet::new_reply(query.id());
                reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
                if query.has_flags(PacketFlag::RECURSION_DESIRED) {
                    reply.set_flags(PacketFlag::RECURSION_DESIRED);
                }
                for q in &query.questions {
                    if q.qtype == QTYPE::TYPE(TYPE::A) {
                        reply.answers.push(ResourceRecord::new(
                            q.qname.clone(),
                            CLASS::IN,
                            60,
                            RData::A(A::from(ANSWER)),
                        ));
                    }
                }
                reply.questions = query.questions.clone();
                if let Some(opt) = query.opt() {
                    *reply.opt_mut() = Some(simple_dns::rdata::OPT {
                        opt_codes: Vec::new(),
                        udp_packet_size: opt.udp_packet_size.clamp(512, 1232),
                        version: 0,
                    });
                }
                let _ = socket.send_to(&reply.build_bytes_vec().unwrap(), from);
            }
        });
        DnsServer {
            stop,
            queries,
            thread: Some(thread),
        }
    }

    /// How many queries reached it so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What `dig` saw.
#[derive(Debug)]
pub struct Lookup {
    /// The response's status (`NOERROR`, `NXDOMAIN`, `SERVFAIL`…); none when no answer came.
    pub status: Option<String>,
    /// The A records in the answer section.
    pub addresses: Vec<Ipv4Addr>,
    /// Wall time of the whole `dig` run.
    pub elapsed: Duration,
    /// `dig`'s exit code (9: no reply from the server).
    pub exit: Option<i32>,
}

/// Looks `name` up (type A, over UDP) from namespace `a` at `b`:53 with `dig`, waiting at
/// most one second, one try.
pub fn dig(pair: &NetPair, name: &str) -> Lookup {
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &pair.a, "dig"])
        .arg(format!("@{B_ADDR}"))
        .args(["+time=1", "+tries=1", "+notcp", name, "A"])
        .output()
        .expect("run dig (Debian package bind9-dnsutils)");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text.lines().find_map(|l| {
        let rest = l.split("status: ").nth(1)?;
        Some(rest.split(',').next()?.trim().to_string())
    });
    let addresses = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, "IN", "A", addr] => addr.parse().ok(),
                _ => None,
            }
        })
        .collect();
    Lookup {
        status,
        addresses,
        elapsed,
        exit: out.status.code(),
    }
}

/// Asserts that `name` resolves from `a` to [`ANSWER`] with status NOERROR.
pub fn assert_resolves(pair: &NetPair, name: &str) {
    let r = dig(pair, name);
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "{name}: {r:?}");
    assert_eq!(r.addresses, vec![ANSWER], "{name}: {r:?}");
}

/// The NFQUEUE queues bound in namespace `ns` (`/proc/net/netfilter/nfnetlink_queue`, one
/// line per queue a worker listens on).
pub fn bound_queues(pair: &NetPair, ns: &str) -> String {
    // Missing until the kernel module is loaded: then no queue is bound either.
    pair.within(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
            .unwrap_or_default()
    })
}
