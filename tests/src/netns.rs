//! Throwaway network namespaces for network tests: two namespaces joined by a veth pair,
//! deleted on drop even when the test panics. Traffic stays between them.

// Test support: a failed setup step should stop the test loudly.
#![allow(clippy::expect_used)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

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
            text.push_str(&self.exec(ns, &["tc", "qdisc", "show"]));
            text.push_str(&self.exec(ns, &["tc", "filter", "show", "dev", interface]));
            text.push_str(&self.exec(ns, &["nft", "list", "ruleset"]));
            // `-t mangle` instantiates the (empty) table in both snapshots alike.
            for save in ["iptables-legacy-save", "ip6tables-legacy-save"] {
                for line in self.exec(ns, &[save, "-t", "mangle"]).lines() {
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
        }
        text
    }
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
