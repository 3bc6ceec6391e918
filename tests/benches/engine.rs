//! The experiment engine's own cost: CPU time and peak memory of the demo experiment run
//! through the engine (`engine::plan` + `engine::run`, with the SQLite history and the log),
//! against a baseline measured in the same process and run: the same fault and the same probes
//! driven directly — one `Execution` of `process-pause` held 3 s, `http-probe` checked at the
//! same moments (edge before and after, every 500 ms in between) — without the engine.
//!
//! `cargo bench -p faultline-tests --bench engine --profile dev`; prints both and the
//! differences. CPU comes from `/proc/self/stat` (utime + stime over all threads, in clock
//! ticks of 10 ms); peak memory is VmHWM, reset through `/proc/self/clear_refs` before each run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use faultline::execution::{Execution, Spec};
use faultline::experiment::{engine, parse, store};
use faultline::policy::Policy;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");
const DEMO: &str = include_str!("../../examples/demo.yaml");

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn policy(pid: u32, port: u16) -> Policy {
    Policy::parse(&format!(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{pid}], signals = [\"stop\"] }}\n\n[[grant]]\ncomponent = \"http-probe@^0.1\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [\"{port}\"] }}\n"
    ))
    .unwrap()
}

fn options(state: &std::path::Path, pid: u32, port: u16) -> engine::Options {
    let hub = faultline::hub::HubConfig {
        cache_dir: Some(state.join("hub")),
        ..Default::default()
    };
    engine::Options {
        state_dir: state.to_path_buf(),
        hub,
        policy: policy(pid, port),
        trusted_roots: Vec::new(),
        memory_limit: 64 << 20,
        call_timeout: Duration::from_secs(10),
    }
}

fn demo_text(pid: u32, port: u16) -> String {
    DEMO.replace("{{PID}}", &pid.to_string())
        .replace("{{PORT}}", &port.to_string())
}

/// The demo through the engine.
async fn through_engine(state: &std::path::Path) -> String {
    let svc = faultline_tests::DemoService::start(BIN);
    let text = demo_text(svc.pid(), svc.port);
    let experiment = parse::parse(&text, "demo.yaml").unwrap();
    let options = options(state, svc.pid(), svc.port);
    let plan = engine::plan(experiment, "demo.yaml", "sha256:bench", &options)
        .await
        .unwrap();
    let history = store::Store::open(&store::history_path(state)).unwrap();
    let record = engine::run(plan, engine::new_id(), Some(history), Default::default()).await;
    format!("{:?}", record.end_state)
}

/// The same fault and probe checks, driven directly.
async fn direct(state: &std::path::Path) -> String {
    let svc = faultline_tests::DemoService::start(BIN);
    let options = options(state, svc.pid(), svc.port);
    let host = Arc::new(
        faultline::host::Host::new(
            {
                let mut c = faultline::host::HostConfig::new(state.to_path_buf());
                c.call_timeout = options.call_timeout;
                c
            },
            faultline::host::tracing_log(),
        )
        .unwrap(),
    );
    let (hub, _) = faultline::hub::open_hub(options.hub.clone()).await.unwrap();
    let fetch = |r: &'static str| {
        let hub = &hub;
        async move {
            faultline::component::Source::from_request(r)
                .unwrap()
                .fetch(Some(hub))
                .await
                .unwrap()
        }
    };
    let (fault, probe) = (
        fetch("process-pause@^0.1").await,
        fetch("http-probe@^0.1").await,
    );
    let fault = host
        .load_fault(&fault.bytes, &fault.identity, &options.policy)
        .await
        .unwrap();
    let probe = host
        .load_probe(&probe.bytes, &probe.identity, &options.policy)
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/", svc.port);
    let edge = format!(r#"{{"url": "{url}", "timeout": "1s"}}"#);
    let cont = format!(r#"{{"url": "{url}", "timeout": "400ms"}}"#);
    let pid = svc.pid();
    let params = format!(r#"{{"pid": {pid}}}"#);
    fault.validate(&host, &params).await.unwrap();
    probe.validate(&host, &edge).await.unwrap();
    probe.validate(&host, &cont).await.unwrap();
    let passes = |v: faultline::host::Verdict| u8::from(v == faultline::host::Verdict::Passed);
    let mut passed = passes(probe.judge(&host, "direct", &edge).await.verdict);
    let checks = async {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(6) {
            let t = Instant::now();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), probe.judge(&host, "direct", &cont))
                    .await;
            tokio::time::sleep(Duration::from_millis(500).saturating_sub(t.elapsed())).await;
        }
    };
    let run = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let spec = Spec {
            id: "direct.0.0".into(),
            params: params.clone(),
            duration: Duration::from_secs(3),
            lease: None,
        };
        Execution::new(host.clone(), Arc::new(fault), spec)
            .run()
            .await
    };
    let (_, outcome) = tokio::join!(checks, run);
    passed += passes(probe.judge(&host, "direct", &edge).await.verdict);
    format!("clean={} edge={passed}", outcome.is_clean())
}

/// CPU in ms, peak memory in KiB, what the run said.
type Measured = (f64, u64, String);

fn measure<F: std::future::Future<Output = String>>(
    rt: &tokio::runtime::Runtime,
    f: impl FnOnce() -> F,
) -> Measured {
    reset_peak();
    let before = cpu_ticks();
    let said = rt.block_on(f());
    let cpu = (cpu_ticks() - before) as f64 * 10.0;
    (cpu, peak_kib(), said)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("engine bench skipped: needs root (it pauses a process)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Warm-up: the compile cache fills, so both runs below load compiled components.
    measure(&rt, || direct(dir.path()));
    let mut rows = Vec::new();
    for round in 0..3 {
        let d = measure(&rt, || direct(dir.path()));
        let e = measure(&rt, || through_engine(dir.path()));
        println!(
            "round {round}: direct {:.0} ms CPU, peak {} KiB ({}); engine {:.0} ms CPU, peak {} KiB ({})",
            d.0, d.1, d.2, e.0, e.1, e.2
        );
        rows.push((d, e));
    }
    let mean = |f: &dyn Fn(&(Measured, Measured)) -> f64| {
        rows.iter().map(f).sum::<f64>() / rows.len() as f64
    };
    let (dc, ec) = (mean(&|r| r.0.0), mean(&|r| r.1.0));
    let (dm, em) = (mean(&|r| r.0.1 as f64), mean(&|r| r.1.1 as f64));
    println!(
        "demo experiment (7 s, 1 fault, 2 probes, ~15 checks): engine {ec:.0} ms CPU vs direct {dc:.0} ms: {:+.0} ms ({:.2}x); peak memory {:.1} MiB vs {:.1} MiB: {:+.1} MiB",
        ec - dc,
        ec / dc.max(1.0),
        em / 1024.0,
        dm / 1024.0,
        (em - dm) / 1024.0
    );
}
