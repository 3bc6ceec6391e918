//! The probe round trip: the host's `check` → `http-probe` → `wasi:http` → the host's pooled
//! client → an HTTP server on loopback and back, against a baseline measured in the same run: a
//! direct GET of the same URL through a pooled hyper client on the host. Run with
//! `cargo bench -p faultline-tests --bench probe`; it prints both times and their ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

fn roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, host, _dir, probe, client) = rt.block_on(async {
        let server = faultline_tests::probeserver::ProbeServer::start().await;
        let (host, dir) = faultline_tests::host_with(|c| c.call_timeout = Duration::from_secs(5));
        let policy = faultline::policy::Policy::parse(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"outbound\"]\noutbound = { destinations = [\"127.0.0.1\"] }\n",
        )
        .unwrap();
        let bytes = faultline_tests::wasm(faultline_tests::components::HTTP_PROBE);
        let probe = faultline_tests::load_probe(&host, &bytes, &policy).await.unwrap();
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        (server, host, dir, probe, client)
    });
    let url = server.url("/json");
    let params = format!(r#"{{"url": "{url}", "json": {{"pointer": "/status", "value": "UP"}}}}"#);
    let uri: http::Uri = url.parse().unwrap();
    let probe_once = || async {
        let o = probe.check(&host, "bench", &params).await.unwrap();
        assert!(o.ok, "{}", o.message);
    };
    let direct_once = || async {
        let r = client.get(uri.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"{\"status\":\"UP\""));
    };
    let mut group = c.benchmark_group("probe-roundtrip");
    group.bench_function(
        "http-probe check (host -> guest -> wasi:http -> loopback)",
        |b| b.to_async(&rt).iter(probe_once),
    );
    group.bench_function("direct hyper GET (baseline)", |b| {
        b.to_async(&rt).iter(direct_once)
    });
    group.finish();
    // The same two, timed back to back, for the ratio criterion does not print.
    let mean = |f: &dyn Fn() -> Duration| {
        let n = 200;
        (0..n).map(|_| f()).sum::<Duration>() / n
    };
    let p = mean(&|| {
        let t = Instant::now();
        rt.block_on(probe_once());
        t.elapsed()
    });
    let d = mean(&|| {
        let t = Instant::now();
        rt.block_on(direct_once());
        t.elapsed()
    });
    println!(
        "probe round trip {:.3} ms, direct GET {:.3} ms, ratio {:.1}x",
        p.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        p.as_secs_f64() / d.as_secs_f64()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = roundtrip
}
criterion_main!(benches);
