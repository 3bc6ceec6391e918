//! Abort → everything reverted, for 1, 10, 100 and 1,000 faults held at once: each is an
//! `Execution` of `process-pause` on a `sleep` process of its own, all on one host; once every
//! one is injected, all are stopped (`StopReason::EmergencyStop`) at the same instant, and each
//! fault's time from that instant to its revert being done is recorded. Prints p50, p99 and
//! the last, per count, over all rounds; checks every process is running again afterwards.
//!
//! `cargo bench -p faultline-tests --bench abort` (release figures), or with `--profile dev`
//! for a quick look; `-- 1000` runs only that count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use faultline::execution::{Execution, Spec, StopReason};
use faultline_tests::{
    Sleeper, components as c, host, injected, policy_for_pids, proc_state, wasm,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn round(n: usize) -> Vec<f64> {
    let sleepers: Vec<Sleeper> = (0..n).map(|_| Sleeper::start()).collect();
    let pids: Vec<u32> = sleepers.iter().map(Sleeper::pid).collect();
    let (host, _dir) = host();
    let plugin =
        faultline_tests::load_fault(&host, &wasm(c::PROCESS_PAUSE), &policy_for_pids(&pids))
            .await
            .unwrap();
    let (host, plugin) = (Arc::new(host), Arc::new(plugin));
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for pid in &pids {
        let execution = Execution::new(
            host.clone(),
            plugin.clone(),
            Spec {
                id: faultline::execution::new_id(),
                params: format!(r#"{{"pid": {pid}}}"#),
                duration: Duration::from_secs(600),
                lease: None,
            },
        );
        handles.push(execution.handle());
        tasks.push(tokio::spawn(execution.run()));
    }
    for h in &handles {
        injected(h).await;
    }
    for pid in &pids {
        assert_eq!(proc_state(*pid), 'T', "{pid} not paused");
    }
    let start = Instant::now();
    for h in &handles {
        h.stop(StopReason::EmergencyStop);
    }
    let waits: Vec<_> = handles
        .iter()
        .map(|h| {
            let h = h.clone();
            tokio::spawn(async move {
                let outcome = h.finished().await;
                assert!(outcome.is_clean(), "{outcome:?}");
                start.elapsed().as_secs_f64() * 1000.0
            })
        })
        .collect();
    let mut ms = Vec::new();
    for w in waits {
        ms.push(w.await.unwrap());
    }
    for t in tasks {
        t.await.unwrap();
    }
    for pid in &pids {
        assert_ne!(proc_state(*pid), 'T', "{pid} left paused");
    }
    ms
}

fn main() {
    let only: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("abort -> reverted: ms from the stop to each fault's revert done");
    println!(
        "{:>6} {:>7} {:>9} {:>9} {:>9}",
        "faults", "rounds", "p50", "p99", "last"
    );
    for (n, rounds) in [(1, 20), (10, 10), (100, 5), (1000, 2)] {
        if only.is_some_and(|o| o != n) {
            continue;
        }
        let mut all = Vec::new();
        for _ in 0..rounds {
            all.extend(runtime.block_on(round(n)));
        }
        all.sort_by(f64::total_cmp);
        println!(
            "{n:>6} {rounds:>7} {:>9.1} {:>9.1} {:>9.1}",
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all[all.len() - 1]
        );
    }
}
