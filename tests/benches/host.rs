//! The host's own cost, each figure against a bare-wasmtime floor measured in the same run:
//! a minimal host with the same engine (so it reads the host's compiled artefacts), WASI, a
//! no-op `log` and every other import a trap — nothing of Faultline's checks, journal or policy.
//!
//! - **warm load**: the host's `load_fault` of `process-pause` from its compile cache (digest,
//!   cache read, export and import checks, linking, `describe`, policy) against the floor's
//!   digest, `Component::deserialize_file` of the same artefact, linking, instantiation and
//!   `describe`;
//! - **no-op inject → revert**: `fixture-misbehave` with `{}` (nothing to do), injected and
//!   reverted in two fresh instances, against the floor calling the same two exports;
//! - **guest → host call**: the same fixture writing 1,000 log lines in `inject`, minus the
//!   no-op, per call;
//! - **cold compile** of every published component: the host's `compile` without a cache
//!   against `Component::new` (printed as a table, three runs each).
//!
//! `cargo bench --workspace --bench host` (release figures); `-- warm` etc. filters criterion's
//! groups, and the ratio lines are printed after them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// The floor deserialises the artefact the host's compile cache wrote, as a minimal wasmtime
// host would: `Component::deserialize_file` is `unsafe` (see its SAFETY line).
#![allow(unsafe_code)]

use criterion::{Criterion, criterion_group, criterion_main};
use faultline::contract::fault::{Fault, FaultPre};
use faultline::contract::types::InjectRequest;
use faultline::host::cache::CompileCache;
use faultline::host::{FaultPlugin, Host};
use faultline::policy::Policy;
use faultline_tests::components as c;
use sha2::Digest as _;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The floor's store: WASI and nothing else.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn bare_store(engine: &Engine) -> Store<Bare> {
    let mut store = Store::new(
        engine,
        Bare {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    // The host's engine interrupts by epoch; a deadline far away never fires here.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

/// The floor's linker for `component`: WASI, `log` as a no-op, every other import a trap.
fn bare_linker(engine: &Engine, component: &Component) -> Linker<Bare> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    linker
        .instance("faultline:contract/log@0.1.1")
        .unwrap()
        .func_wrap(
            "write",
            |_, (_level, _message): (faultline::contract::log::Level, String)| Ok(()),
        )
        .unwrap();
    // Every other contract function traps. (`define_unknown_imports_as_traps` would also
    // shadow the WASI interfaces the component names at a newer patch version.)
    for (name, item) in component.component_type().imports(engine) {
        let wasmtime::component::types::ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("faultline:contract/") || name.starts_with("faultline:contract/log@") {
            continue;
        }
        let mut scope = linker.instance(name).unwrap();
        for (export, item) in instance.exports(engine) {
            if matches!(
                item.ty,
                wasmtime::component::types::ComponentItem::ComponentFunc(_)
            ) {
                scope
                    .func_new(export, |_, _, _, _| {
                        Err(wasmtime::Error::msg(
                            "the floor links no contract functions",
                        ))
                    })
                    .unwrap();
            }
        }
    }
    linker
}

/// The floor's whole warm load: find the artefact by the component's digest, map it, link,
/// instantiate, `describe`.
async fn floor_load(engine: &Engine, cache: &CompileCache, bytes: &[u8]) -> String {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    let path = cache.artefact_path(&hex);
    // SAFETY: the file is the output of `Component::serialize` for this engine's exact
    // configuration, written by the host's compile cache in this run's private directory a
    // moment ago and checked by it; nobody else writes there.
    let component = unsafe { Component::deserialize_file(engine, &path) }.unwrap();
    let linker = bare_linker(engine, &component);
    let pre = FaultPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let mut store = bare_store(engine);
    let fault = pre.instantiate_async(&mut store).await.unwrap();
    let d = fault.call_describe(&mut store).await.unwrap();
    d.name
}

/// One instance's `inject` with `params` on the floor; returns the state.
async fn floor_inject(engine: &Engine, pre: &FaultPre<Bare>, params: &str) -> Vec<u8> {
    let mut store = bare_store(engine);
    let fault: Fault = pre.instantiate_async(&mut store).await.unwrap();
    let request = InjectRequest {
        params: params.to_string(),
        duration_ms: 0,
        execution_id: "bench".into(),
    };
    fault
        .call_inject(&mut store, &request)
        .await
        .unwrap()
        .unwrap()
}

async fn floor_revert(engine: &Engine, pre: &FaultPre<Bare>, state: &[u8]) {
    let mut store = bare_store(engine);
    let fault = pre.instantiate_async(&mut store).await.unwrap();
    fault.call_revert(&mut store, state).await.unwrap().unwrap();
}

async fn host_round_trip(host: &Host, plugin: &FaultPlugin, params: &str) {
    let injected = plugin
        .inject(host, "bench", params, Duration::ZERO)
        .await
        .unwrap();
    let reverted = plugin.revert(host, "bench", Some(&injected.state)).await;
    assert!(reverted.guest_error.is_none() && reverted.failures.is_empty());
}

/// Mean time of `f` over `n` runs, after a warm-up run.
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    f();
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn ratio_line(what: &str, ours: Duration, floor: Duration) {
    println!(
        "{what}: faultline {:.1} µs, floor {:.1} µs, ratio {:.2}x",
        ours.as_secs_f64() * 1e6,
        floor.as_secs_f64() * 1e6,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}

fn host_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (host, dir) = faultline_tests::host();
    // The host's own cache, for the artefact paths it writes (the floor reads the same files).
    let cache = CompileCache::new(&dir.path().join("cache"), host.engine()).unwrap();
    let engine = host.engine().clone();
    let pause = faultline_tests::wasm(c::PROCESS_PAUSE);
    let misbehave = faultline_tests::wasm(c::MISBEHAVE);
    let policy = Policy::parse(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\"]\nprocess = { pids = [4194303] }\n",
    )
    .unwrap();
    // Cold loads fill the host's cache; every load after that is warm, for both.
    let noop = rt.block_on(async {
        faultline_tests::load_fault(&host, &pause, &policy)
            .await
            .unwrap();
        faultline_tests::load_fault(&host, &misbehave, &policy)
            .await
            .unwrap()
    });
    // Who the bytes are (the bundled hub's release), worked out once: a caller resolves it
    // before it loads, and the test helper reads the whole index each time.
    let pause_identity = faultline_tests::identity(&pause);
    let misbehave_hex = hex::encode(sha2::Sha256::digest(&misbehave));
    // SAFETY: as in `floor_load`: the host's own artefact for this engine, in this run's
    // private cache directory.
    let misbehave_component =
        unsafe { Component::deserialize_file(&engine, cache.artefact_path(&misbehave_hex)) }
            .unwrap();
    let floor_pre = FaultPre::new(
        bare_linker(&engine, &misbehave_component)
            .instantiate_pre(&misbehave_component)
            .unwrap(),
    )
    .unwrap();
    let logs = r#"{"logs": 1000}"#;

    let mut warm = c.benchmark_group("warm-load");
    warm.bench_function("faultline load_fault (process-pause, cached)", |b| {
        b.to_async(&rt).iter(|| async {
            host.load_fault(&pause, &pause_identity, &policy)
                .await
                .unwrap()
        })
    });
    warm.bench_function("floor: deserialize_file + link + describe", |b| {
        b.to_async(&rt)
            .iter(|| async { floor_load(&engine, &cache, &pause).await })
    });
    warm.finish();

    let mut round = c.benchmark_group("noop-inject-revert");
    round.bench_function("faultline inject + revert", |b| {
        b.to_async(&rt)
            .iter(|| async { host_round_trip(&host, &noop, "{}").await })
    });
    round.bench_function("floor: inject + revert", |b| {
        b.to_async(&rt).iter(|| async {
            let state = floor_inject(&engine, &floor_pre, "{}").await;
            floor_revert(&engine, &floor_pre, &state).await;
        })
    });
    round.finish();

    let mut calls = c.benchmark_group("guest-host-calls");
    calls.bench_function("faultline inject writing 1000 log lines", |b| {
        b.to_async(&rt).iter(|| async {
            noop.inject(&host, "bench", logs, Duration::ZERO)
                .await
                .unwrap()
        })
    });
    calls.bench_function("floor: inject writing 1000 log lines", |b| {
        b.to_async(&rt)
            .iter(|| async { floor_inject(&engine, &floor_pre, logs).await })
    });
    calls.finish();

    // The ratios, timed back to back (criterion prints no ratio).
    macro_rules! timed {
        ($body:expr) => {
            mean(200, || {
                rt.block_on(async {
                    $body;
                })
            })
        };
    }
    let ours = timed!(
        host.load_fault(&pause, &pause_identity, &policy)
            .await
            .unwrap()
    );
    let floor = timed!(floor_load(&engine, &cache, &pause).await);
    ratio_line("warm load + instantiate + describe", ours, floor);
    let ours = timed!(host_round_trip(&host, &noop, "{}").await);
    let floor = timed!({
        let state = floor_inject(&engine, &floor_pre, "{}").await;
        floor_revert(&engine, &floor_pre, &state).await
    });
    ratio_line("no-op inject -> revert", ours, floor);
    let per_call = |with: Duration, without: Duration| with.saturating_sub(without) / 1000;
    let ours = per_call(
        timed!(
            noop.inject(&host, "bench", logs, Duration::ZERO)
                .await
                .unwrap()
        ),
        timed!(
            noop.inject(&host, "bench", "{}", Duration::ZERO)
                .await
                .unwrap()
        ),
    );
    let floor = per_call(
        timed!(floor_inject(&engine, &floor_pre, logs).await),
        timed!(floor_inject(&engine, &floor_pre, "{}").await),
    );
    ratio_line("guest -> host call (log write)", ours, floor);
}

/// Cold compile of every published component: the host's `compile` with no cache against
/// `Component::new` on the same engine.
fn cold_compiles() {
    let (host, _dir) = faultline_tests::host_with(|c| c.cache_dir = None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = host.engine().clone();
    println!("cold compile (ms, mean of 3): component, bytes, faultline, floor, ratio");
    let (mut ours_total, mut floor_total) = (Duration::ZERO, Duration::ZERO);
    for (name, path) in c::PUBLISHED {
        let bytes = faultline_tests::wasm(path);
        let ours = mean(3, || {
            let (_, _, hit) = rt.block_on(host.compile(&bytes)).unwrap();
            assert!(!hit);
        });
        let floor = mean(3, || {
            Component::new(&engine, &bytes).unwrap();
        });
        ours_total += ours;
        floor_total += floor;
        println!(
            "  {name:<20} {:>7} {:>8.1} {:>8.1} {:>6.2}x",
            bytes.len(),
            ours.as_secs_f64() * 1e3,
            floor.as_secs_f64() * 1e3,
            ours.as_secs_f64() / floor.as_secs_f64()
        );
    }
    ratio_line("cold compile, all published", ours_total, floor_total);
}

fn cold(_: &mut Criterion) {
    // A minute of Cranelift: `FAULTLINE_BENCH_NO_COLD=1` leaves it out (to profile the rest).
    if std::env::var_os("FAULTLINE_BENCH_NO_COLD").is_none() {
        cold_compiles();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = host_bench, cold
}
criterion_main!(benches);
