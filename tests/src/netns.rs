//! Throwaway network namespaces for network tests: two namespaces joined by a veth pair,
//! deleted on drop even when the test panics. Traffic stays between them.

// Test support: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Namespaces `a` and `b`, with `v0` (10.77.0.1/24) in `a` and its peer `v1` (10.77.0.2/24)
/// in `b`.
pub struct NetPair {
    /// Name of the first namespace (`ip netns`), where faults are usually applied.
    pub a: String,
    /// Name of the second namespace.
    pub b: String,
}

/// The interface in `a`.
pub const A_IF: &str = "v0";
/// The interface in `b`.
pub const B_IF: &str = "v1";
/// The address of `a` on the veth.
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The address of `b` on the veth.
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

impl NetPair {
    /// Creates the pair; `label` (a few lowercase letters) makes the names recognisable.
    pub fn new(label: &str) -> NetPair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // The guard exists before anything is created, so a failed setup is cleaned up too.
        let pair = NetPair {
            a: format!("flt-{label}-{pid}-{n}a"),
            b: format!("flt-{label}-{pid}-{n}b"),
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&["-n", &pair.a, "link", "set", "lo", "up"]);
        ip(&["-n", &pair.b, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &pair.a, "link", "add", A_IF, "type", "veth", "peer", "name", B_IF, "netns",
            &pair.b,
        ]);
        ip(&["-n", &pair.a, "addr", "add", "10.77.0.1/24", "dev", A_IF]);
        ip(&["-n", &pair.b, "addr", "add", "10.77.0.2/24", "dev", B_IF]);
        ip(&["-n", &pair.a, "link", "set", A_IF, "up"]);
        ip(&["-n", &pair.b, "link", "set", B_IF, "up"]);
        pair
    }

    /// Runs `f` on a thread inside namespace `ns`; sockets it creates belong to `ns` and may be
    /// returned and used from any thread.
    pub fn within<R: Send>(&self, ns: &str, f: impl FnOnce() -> R + Send) -> R {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }

    /// Runs a command inside namespace `ns` and returns its standard output.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{args:?} in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The qdiscs, nftables ruleset and iptables-legacy mangle tables of both namespaces, with
    /// counters and timestamps removed, for before/after comparison.
    pub fn snapshot(&self) -> String {
        let mut text = String::new();
        for (ns, interface) in [(&self.a, A_IF), (&self.b, B_IF)] {
            text.push_str(&format!("== {ns}\n"));
            text.push_str(&network_state(Some(ns), interface));
        }
        text
    }
}

/// The qdiscs, the filters on `interface`, the nftables ruleset and the iptables-legacy mangle
/// tables (counters removed) of a named namespace, or of this process's with `None`: what a
/// network fault may change, for before/after comparison.
pub fn network_state(ns: Option<&str>, interface: &str) -> String {
    let run = |args: &[&str]| {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(args);
                c
            }
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let out = cmd.output().expect("run a network tool");
        assert!(
            out.status.success(),
            "{args:?} in {ns:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut text = String::new();
    // Qdiscs of `interface` and of the ifb devices faults redirect ingress to: other tests may
    // be adding and removing veths of their own meanwhile.
    let qdiscs = run(&["tc", "qdisc", "show"]);
    for line in qdiscs.lines() {
        let dev = line.split_whitespace().skip_while(|w| *w != "dev").nth(1);
        if dev.is_some_and(|d| d == interface || d.starts_with("ifb")) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(&run(&["tc", "filter", "show", "dev", interface]));
    text.push_str(&run(&["nft", "list", "ruleset"]));
    // `-t mangle` instantiates the (empty) table in both snapshots alike.
    for save in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        for line in run(&[save, "-t", "mangle"]).lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.find(" [") {
                Some(i) if line.starts_with(':') => &line[..i],
                _ => line,
            };
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// Measurements between the two namespaces, shared by the backend and the fault tests.

/// Sends `count` numbered UDP datagrams from `a` to `b` and returns (distinct, total) received.
pub fn udp_delivery(pair: &NetPair, port: u16, count: u32) -> (u32, u32) {
    let receiver = pair.within(&pair.b, || UdpSocket::bind(("0.0.0.0", port)).unwrap());
    receiver
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let sender = pair.within(&pair.a, || UdpSocket::bind((A_ADDR, 0)).unwrap());
    sender.connect((B_ADDR, port)).unwrap();
    let counter = std::thread::spawn(move || {
        let mut seen = vec![false; count as usize];
        let mut total = 0;
        let mut buf = [0u8; 256];
        while let Ok(n) = receiver.recv(&mut buf) {
            if n >= 4 {
                let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if i < seen.len() {
                    seen[i] = true;
                    total += 1;
                }
            }
        }
        (seen.iter().filter(|s| **s).count() as u32, total)
    });
    let mut payload = [0x5au8; 64];
    for i in 0..count {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        // A datagram dropped in the sender's own output path fails with EPERM.
        let _ = sender.send(&payload);
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    counter.join().unwrap()
}

/// Five standard deviations of a share `p` measured over `n` random draws: a random effect
/// misses this only about once in 1.7 million runs.
pub fn binomial_5sigma(p: f64, n: u32) -> f64 {
    5.0 * (p * (1.0 - p) / f64::from(n)).sqrt()
}

/// Prints a measurement and asserts it is within `tolerance` of `target`.
pub fn assert_near(what: &str, measured: f64, target: f64, tolerance: f64) {
    eprintln!("{what}: measured {measured:.4}, target {target:.4}");
    assert!(
        (measured - target).abs() <= tolerance,
        "{what}: measured {measured:.4}, target {target:.4} ± {tolerance}"
    );
}

/// A non-blocking TCP listener on `port` in `b`.
pub fn tcp_listener(pair: &NetPair, port: u16) -> TcpListener {
    let listener = pair.within(&pair.b, || TcpListener::bind(("0.0.0.0", port)).unwrap());
    listener.set_nonblocking(true).unwrap();
    listener
}

/// Connects over TCP from `a` to `b`:`port`.
pub fn connect_from_a(pair: &NetPair, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    pair.within(&pair.a, || {
        TcpStream::connect_timeout(&SocketAddr::from((B_ADDR, port)), timeout)
    })
}

/// Echoes datagrams until the returned flag is set.
pub fn echo(socket: UdpSocket) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stopping.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    stop
}

/// Round-trip times in ms of `count` sequential UDP echoes from `a` to `b`.
pub fn rtts(client: &UdpSocket, count: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..count {
        let start = Instant::now();
        client.send(&(i as u32).to_be_bytes()).unwrap();
        // Skip stale replies of earlier probes.
        loop {
            let n = client.recv(&mut buf).unwrap();
            if n == 4 && buf[..4] == (i as u32).to_be_bytes() {
                break;
            }
        }
        out.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

/// The median of some samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
