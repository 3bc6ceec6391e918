//! DNS failure by name: what the NFQUEUE worker does with a queued DNS query.
//!
//! The worker sees every UDP datagram to port 53 of the change's destinations. A query whose
//! name matches is either dropped (`timeout`), or dropped and answered in the server's place
//! (`nxdomain`, `servfail`): the answer keeps the query's id, opcode, RD flag, question and
//! EDNS presence, sets QR and RA, and is written with a raw socket in the namespace, from the
//! server's address and port to the client's, so it reaches the client socket over loopback as
//! the server's own answer would. Anything else (other names, responses, other opcodes, a
//! packet that does not parse as IP, UDP or DNS) is accepted untouched: a malformed packet
//! never stops the worker.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use simple_dns::{OPCODE, Packet, PacketFlag, RCODE};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::capability::{CapError, CapResult};

/// How a matching query fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFailure {
    /// Answered: the name does not exist (rcode 3).
    NxDomain,
    /// Answered: the server failed (rcode 2).
    ServFail,
    /// Dropped: the client hears nothing and times out.
    Timeout,
}

/// At most this many names per change: each query is compared with every one.
pub const MAX_NAMES: usize = 256;
/// The longest name in presentation form without the final dot (RFC 1035: 255 octets on the
/// wire).
const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// One name pattern, lowercased, as labels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Exactly this name.
    Exact(Vec<Vec<u8>>),
    /// Any name strictly below this one (`*.internal`).
    Below(Vec<Vec<u8>>),
}

/// The validated names of one change; empty matches every name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    patterns: Vec<Pattern>,
}

impl Names {
    /// Validates `db.internal`, `*.internal` (names below it) or `*` (every name); a final dot
    /// is allowed; case does not matter. An empty list means every name.
    pub fn parse(names: &[String]) -> CapResult<Names> {
        if names.len() > MAX_NAMES {
            return Err(CapError::Invalid(format!(
                "{} dns names given; at most {MAX_NAMES}",
                names.len()
            )));
        }
        let mut patterns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let bad = |why: &str| CapError::Invalid(format!("dns name #{i} {name:?}: {why}"));
            if name == "*" {
                // Every name: the same as an empty list.
                return Ok(Names::default());
            }
            let text = name.strip_suffix('.').unwrap_or(name);
            let (below, text) = match text.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            if text.is_empty() {
                return Err(bad("is empty"));
            }
            if text.len() > MAX_NAME_LEN {
                return Err(bad(&format!("is longer than {MAX_NAME_LEN} characters")));
            }
            let mut labels = Vec::new();
            for label in text.split('.') {
                if label.is_empty() {
                    return Err(bad("has an empty label"));
                }
                if label.len() > MAX_LABEL_LEN {
                    return Err(bad(&format!(
                        "has a label longer than {MAX_LABEL_LEN} characters"
                    )));
                }
                if label == "*" {
                    return Err(bad("`*` may only stand first, as `*.suffix`"));
                }
                if !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(bad(
                        "labels are letters, digits, `-` and `_` (write other names in punycode)",
                    ));
                }
                labels.push(label.to_ascii_lowercase().into_bytes());
            }
            patterns.push(if below {
                Pattern::Below(labels)
            } else {
                Pattern::Exact(labels)
            });
        }
        patterns.dedup();
        Ok(Names { patterns })
    }

    /// Whether a query name (its labels as on the wire) matches, ignoring ASCII case.
    fn matches(&self, labels: &[&[u8]]) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let same = |pattern: &[Vec<u8>], name: &[&[u8]]| {
            pattern.len() == name.len()
                && pattern
                    .iter()
                    .zip(name)
                    .all(|(p, n)| p.eq_ignore_ascii_case(n))
        };
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(pattern) => same(pattern, labels),
            Pattern::Below(pattern) => {
                labels.len() > pattern.len()
                    && same(pattern, &labels[labels.len() - pattern.len()..])
            }
        })
    }
}

/// What the worker does with one queued packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Accept it untouched.
    Pass,
    /// Drop it.
    Drop,
    /// Drop it and send this IP packet (the answer) towards `to`.
    Answer { packet: Vec<u8>, to: IpAddr },
}

/// The rule a DNS worker applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub names: Names,
    pub failure: DnsFailure,
}

impl Rule {
    /// Decides what happens to an IP packet leaving the namespace. Never panics, whatever the
    /// bytes.
    pub fn decide(&self, ip: &[u8]) -> Decision {
        let Ok(sliced) = SlicedPacket::from_ip(ip) else {
            return Decision::Pass;
        };
        let (Some(net), Some(TransportSlice::Udp(udp))) = (&sliced.net, &sliced.transport) else {
            return Decision::Pass;
        };
        let (source, destination) = match net {
            NetSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            NetSlice::Ipv6(v6) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
            ),
            _ => return Decision::Pass,
        };
        let Ok(query) = Packet::parse(udp.payload()) else {
            return Decision::Pass;
        };
        // Only standard queries; responses pass (our own answers among them).
        if query.has_flags(PacketFlag::RESPONSE)
            || query.opcode() != OPCODE::StandardQuery
            || query.questions.is_empty()
        {
            return Decision::Pass;
        }
        let matched = query.questions.iter().any(|q| {
            let labels: Vec<&[u8]> = q.qname.get_labels().iter().map(|l| l.as_ref()).collect();
            self.names.matches(&labels)
        });
        if !matched {
            return Decision::Pass;
        }
        let rcode = match self.failure {
            DnsFailure::Timeout => return Decision::Drop,
            DnsFailure::NxDomain => RCODE::NameError,
            DnsFailure::ServFail => RCODE::ServerFailure,
        };
        let Some(answer) = answer(&query, rcode) else {
            // Cannot build an answer from it: let the real server deal with it.
            return Decision::Pass;
        };
        // The answer goes back the way the query came: from the server's address and port to
        // the client's.
        let (server_port, client_port) = (udp.destination_port(), udp.source_port());
        let builder = match (destination, source) {
            (IpAddr::V4(server), IpAddr::V4(client)) => {
                PacketBuilder::ipv4(server.octets(), client.octets(), 64)
                    .udp(server_port, client_port)
            }
            (IpAddr::V6(server), IpAddr::V6(client)) => {
                PacketBuilder::ipv6(server.octets(), client.octets(), 64)
                    .udp(server_port, client_port)
            }
            _ => return Decision::Pass,
        };
        let mut packet = Vec::with_capacity(builder.size(answer.len()));
        if builder.write(&mut packet, &answer).is_err() {
            return Decision::Pass;
        }
        Decision::Answer { packet, to: source }
    }
}

/// The DNS answer to `query` with `rcode` and no records: same id, opcode, RD and question,
/// QR and RA set, an OPT record if the query had one.
fn answer(query: &Packet<'_>, rcode: RCODE) -> Option<Vec<u8>> {
    let mut reply = Packet::new_reply(query.id());
    *reply.opcode_mut() = query.opcode();
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    if query.has_flags(PacketFlag::CHECKING_DISABLED) {
        reply.set_flags(PacketFlag::CHECKING_DISABLED);
    }
    *reply.rcode_mut() = rcode;
    reply.questions = query.questions.clone();
    if let Some(opt) = query.opt() {
        *reply.opt_mut() = Some(simple_dns::rdata::OPT {
            opt_codes: Vec::new(),
            udp_packet_size: opt.udp_packet_size.clamp(512, 1232),
            version: 0,
        });
    }
    reply.build_bytes_vec().ok()
}

/// Raw sockets in the namespace that send the answers, one per address family. Opened by the
/// worker thread after it joined the namespace.
pub(super) struct Responder {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

impl Responder {
    /// Opens both families' raw sockets; a family the namespace lacks is left out.
    pub fn open() -> CapResult<Responder> {
        let raw = |domain: Domain| {
            // IPPROTO_RAW implies that we write the IP header ourselves (IP_HDRINCL).
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
            // Answers go to the namespace's own sockets only: bound to loopback, a packet
            // whose source was forged to a remote address never leaves the namespace.
            socket.bind_device(Some(b"lo"))?;
            Ok::<_, std::io::Error>(socket)
        };
        let v4 = raw(Domain::IPV4);
        let v6 = raw(Domain::IPV6).ok();
        match v4 {
            Ok(v4) => Ok(Responder { v4: Some(v4), v6 }),
            Err(e) if v6.is_none() => Err(CapError::Failed(format!(
                "cannot open a raw socket to answer dns queries: {e}"
            ))),
            Err(_) => Ok(Responder { v4: None, v6 }),
        }
    }

    /// Sends one answer; an error is the caller's to log.
    pub fn send(&self, packet: &[u8], to: IpAddr) -> std::io::Result<()> {
        let socket = match to {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        };
        let Some(socket) = socket else {
            return Err(std::io::Error::other("no raw socket for this family"));
        };
        // The port must be 0 on a raw socket; the destination is in the header as well.
        socket
            .send_to(packet, &SockAddr::from(SocketAddr::new(to, 0)))
            .map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use simple_dns::{CLASS, Name, QCLASS, QTYPE, Question, TYPE};

    fn names(list: &[&str]) -> Names {
        Names::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn labels(name: &str) -> Vec<Vec<u8>> {
        name.split('.').map(|l| l.as_bytes().to_vec()).collect()
    }

    fn matches(n: &Names, name: &str) -> bool {
        let l = labels(name);
        let refs: Vec<&[u8]> = l.iter().map(|v| v.as_slice()).collect();
        n.matches(&refs)
    }

    #[test]
    fn names_match_exactly_or_below_a_suffix_ignoring_case() {
        let n = names(&["db.internal", "*.svc.cluster.local."]);
        assert!(matches(&n, "db.internal"));
        assert!(matches(&n, "DB.Internal"));
        assert!(!matches(&n, "x.db.internal"));
        assert!(!matches(&n, "internal"));
        assert!(matches(&n, "api.svc.cluster.local"));
        assert!(matches(&n, "a.b.SVC.cluster.local"));
        assert!(
            !matches(&n, "svc.cluster.local"),
            "the suffix itself is not below it"
        );
        assert!(!matches(&n, "xsvc.cluster.local"));
        let all = names(&[]);
        assert!(matches(&all, "anything.example"));
        assert_eq!(names(&["*", "db.internal"]), all);
    }

    #[test]
    fn bad_names_are_refused_naming_the_entry() {
        let long_label = "a".repeat(64);
        let long_name = vec!["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "*.",
            "a..b",
            "a.*.b",
            "**.a",
            "a b",
            "a/b",
            "é.fr",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let err = Names::parse(&["ok.example".to_string(), bad.to_string()]).unwrap_err();
            let CapError::Invalid(reason) = err else {
                panic!("{bad:?}: not invalid")
            };
            assert!(reason.contains("#1"), "{reason}");
        }
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("n{i}.example")).collect();
        assert!(Names::parse(&many).is_err());
        assert!(Names::parse(&many[..MAX_NAMES]).is_ok());
    }

    /// An IPv4 UDP packet from 10.0.0.1:40000 to 10.0.0.53:53 carrying `payload`.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 53], 64).udp(40000, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn query(name: &str, id: u16, edns: bool) -> Vec<u8> {
        let mut q = Packet::new_query(id);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        if edns {
            *q.opt_mut() = Some(simple_dns::rdata::OPT {
                opt_codes: Vec::new(),
                udp_packet_size: 4096,
                version: 0,
            });
        }
        q.build_bytes_vec().unwrap()
    }

    #[test]
    fn a_matching_query_gets_an_answer_from_the_server_to_the_client() {
        let rule = Rule {
            names: names(&["db.internal"]),
            failure: DnsFailure::NxDomain,
        };
        for edns in [false, true] {
            let Decision::Answer { packet, to } =
                rule.decide(&udp4(&query("DB.internal", 0xbeef, edns)))
            else {
                panic!("no answer")
            };
            assert_eq!(to, IpAddr::from([10, 0, 0, 1]));
            let sliced = SlicedPacket::from_ip(&packet).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
                panic!("not ipv4")
            };
            assert_eq!(
                ip.header().source_addr(),
                std::net::Ipv4Addr::new(10, 0, 0, 53)
            );
            assert_eq!(
                ip.header().destination_addr(),
                std::net::Ipv4Addr::new(10, 0, 0, 1)
            );
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
                panic!("not udp")
            };
            assert_eq!((udp.source_port(), udp.destination_port()), (53, 40000));
            let reply = Packet::parse(udp.payload()).unwrap();
            assert_eq!(reply.id(), 0xbeef);
            assert!(reply.has_flags(PacketFlag::RESPONSE));
            assert!(reply.has_flags(PacketFlag::RECURSION_AVAILABLE));
            assert!(reply.has_flags(PacketFlag::RECURSION_DESIRED));
            assert_eq!(reply.rcode(), RCODE::NameError);
            assert_eq!(reply.questions.len(), 1);
            assert_eq!(reply.questions[0].qname.to_string(), "DB.internal");
            assert!(reply.answers.is_empty());
            assert_eq!(reply.opt().is_some(), edns);
        }
        let servfail = Rule {
            names: names(&[]),
            failure: DnsFailure::ServFail,
        };
        let Decision::Answer { packet, .. } = servfail.decide(&udp4(&query("x.example", 7, false)))
        else {
            panic!("no answer")
        };
        let sliced = SlicedPacket::from_ip(&packet).unwrap();
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not udp")
        };
        assert_eq!(
            Packet::parse(udp.payload()).unwrap().rcode(),
            RCODE::ServerFailure
        );
    }

    #[test]
    fn ipv6_queries_are_answered_over_ipv6() {
        let rule = Rule {
            names: names(&["db.internal"]),
            failure: DnsFailure::ServFail,
        };
        let (client, server) = ([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], {
            let mut s = [0u8; 16];
            s[0] = 0xfd;
            s[15] = 0x35;
            s
        });
        let mut packet = Vec::new();
        PacketBuilder::ipv6(client, server, 64)
            .udp(50000, 53)
            .write(&mut packet, &query("db.internal", 3, true))
            .unwrap();
        let Decision::Answer { packet, to } = rule.decide(&packet) else {
            panic!("no answer")
        };
        assert_eq!(to, IpAddr::from(client));
        let sliced = SlicedPacket::from_ip(&packet).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!("not ipv6")
        };
        assert_eq!(ip.header().source_addr(), std::net::Ipv6Addr::from(server));
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not udp")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (53, 50000));
        let reply = Packet::parse(udp.payload()).unwrap();
        assert_eq!((reply.id(), reply.rcode()), (3, RCODE::ServerFailure));
    }

    #[test]
    fn other_names_responses_and_timeouts() {
        let rule = Rule {
            names: names(&["*.internal"]),
            failure: DnsFailure::Timeout,
        };
        assert_eq!(
            rule.decide(&udp4(&query("a.internal", 1, false))),
            Decision::Drop
        );
        assert_eq!(
            rule.decide(&udp4(&query("example.com", 1, false))),
            Decision::Pass
        );
        // A response (our own answer looping back, say) passes.
        let mut response = query("a.internal", 1, false);
        response[2] |= 0x80;
        assert_eq!(rule.decide(&udp4(&response)), Decision::Pass);
    }

    #[test]
    fn malformed_packets_pass_and_never_panic() {
        let rule = Rule {
            names: names(&[]),
            failure: DnsFailure::NxDomain,
        };
        assert_eq!(rule.decide(&[]), Decision::Pass);
        assert_eq!(rule.decide(&[0x45; 19]), Decision::Pass);
        assert_eq!(rule.decide(&udp4(b"not dns at all")), Decision::Pass);
        // A question count larger than the packet holds.
        let mut short = query("a.example", 1, false);
        short[5] = 200;
        assert_eq!(rule.decide(&udp4(&short)), Decision::Pass);
        // Every truncation and random bytes after a valid header: no panic, whatever comes out.
        let full = udp4(&query("a.b.example", 9, true));
        for n in 0..full.len() {
            let _ = rule.decide(&full[..n]);
        }
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut bytes = full.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let i = 28 + (state as usize) % (bytes.len() - 28);
                bytes[i] = (state >> 24) as u8;
            }
            let _ = rule.decide(&bytes);
        }
    }
}
