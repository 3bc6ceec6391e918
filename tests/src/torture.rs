//! Support for the recovery tests: a seeded random source, a snapshot of the state faults
//! change, and a tiny blocking HTTP client for the agent's API.

// Test support: a failed step should stop the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A xorshift random source, seeded from `FAULTLINE_TORTURE_SEED` or the clock; print
/// [`Rng::seed`] so a failing run can be replayed.
pub struct Rng {
    seed: u64,
    state: u64,
}

impl Rng {
    /// From `FAULTLINE_TORTURE_SEED` when set, else from the clock.
    pub fn from_env() -> Rng {
        let seed = std::env::var("FAULTLINE_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        Rng {
            seed,
            state: seed | 1,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n.max(1)
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How many torture iterations: 50 under `FAULTLINE_TORTURE=full`, else `quick`.
pub fn iterations(quick: usize) -> usize {
    if std::env::var("FAULTLINE_TORTURE").as_deref() == Ok("full") {
        50
    } else {
        quick
    }
}

/// The state faults change, as far as these tests touch it: the state letter of each target
/// process (`S`, `T`, `?` when gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Pid → state letter.
    pub processes: BTreeMap<u32, char>,
}

impl Snapshot {
    /// Takes a snapshot of these processes.
    pub fn take(pids: &[u32]) -> Snapshot {
        Snapshot {
            processes: pids.iter().map(|&p| (p, crate::proc_state(p))).collect(),
        }
    }

    /// Every difference from `other`, one line each; empty when equal.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (pid, s) in &self.processes {
            let o = other.processes.get(pid).copied().unwrap_or('-');
            if *s != o {
                out.push(format!("process {pid}: {s} before, {o} after"));
            }
        }
        out
    }

    /// Waits (up to `limit`) until the live state equals `self` (a continued process passes
    /// through `R` on its way back to sleep); returns the differences that remain.
    pub fn settle(&self, limit: Duration) -> Vec<String> {
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        let start = Instant::now();
        loop {
            let diff = self.diff(&Snapshot::take(&pids));
            if diff.is_empty() || start.elapsed() > limit {
                return diff;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until every pid is in `state`, up to `limit`.
pub fn wait_all(pids: &[u32], state: char, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pids.iter().all(|&p| crate::proc_state(p) == state) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A policy file granting `process` on exactly these pids.
pub fn policy_file(dir: &std::path::Path, pids: &[u32]) -> std::path::PathBuf {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\", \"cont\", \"kill\", \"term\", \"int\", \"quit\", \"hup\"] }}\n",
            list.join(", ")
        ),
    )
    .unwrap();
    path
}

/// One raw HTTP/1.1 exchange with the agent: sends `raw`, returns the status and JSON body.
pub fn http_raw(addr: &str, raw: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

/// A JSON request to the agent.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_raw(addr, raw.as_bytes())
}
