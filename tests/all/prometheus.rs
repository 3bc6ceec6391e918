//! `prometheus-probe` against a real Prometheus (the Debian package) that the test starts on
//! loopback and that scrapes itself every second: comparators over a vector and a scalar, an
//! empty vector, Prometheus's own errors, a malformed query, a dead URL, a denied one.

use faultline::host::{Checked, Host, Verdict};
use faultline::policy::Policy;
use faultline_tests::free_port;
use faultline_tests::prometheus::Prometheus;
use faultline_tests::{components as c, host, wasm};
use serde_json::json;

/// Every component may reach these ports of 127.0.0.1 (`127.0.0.1:<port>` each).
fn reach(addrs: &[&str]) -> Policy {
    let ports: Vec<&str> = addrs
        .iter()
        .map(|a| a.rsplit_once(':').unwrap().1)
        .collect();
    Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [{}] }}\n",
        ports.join(", ")
    ))
    .unwrap()
}

/// Loads the probe under `policy` and judges one check.
async fn judge(host: &Host, policy: &Policy, params: serde_json::Value) -> Checked {
    let probe = faultline_tests::load_probe(host, &wasm(c::PROMETHEUS_PROBE), policy)
        .await
        .unwrap();
    let params = params.to_string();
    probe.validate(host, &params).await.unwrap();
    probe.judge(host, "ex-prometheus", &params).await
}

fn assert_verdict(c: &Checked, verdict: Verdict, says: &str) {
    assert_eq!(c.verdict, verdict, "{c:?}");
    assert!(c.message.contains(says), "{:?} lacks {says:?}", c.message);
}

#[tokio::test]
async fn prometheus_queries_pass_fail_or_cannot_be_judged() {
    let Some(prom) = Prometheus::start("prometheus_queries_pass_fail_or_cannot_be_judged") else {
        return;
    };
    let dead = format!("127.0.0.1:{}", free_port());
    let policy = reach(&[&prom.addr, &dead]);
    let (host, _d) = host();
    let url = prom.url();
    let q = |query: &str, comparator: &str, value: f64| json!({"url": url, "query": query, "comparator": comparator, "value": value});
    // A vector of one series, compared.
    let c = judge(&host, &policy, q(r#"up{job="prometheus"}"#, "==", 1.0)).await;
    assert_verdict(&c, Verdict::Passed, r#"up{instance=""#);
    assert_eq!(c.value, Some(1.0));
    eprintln!(
        "prometheus-probe: `up` query checked in {:.1} ms (instantiate, wasi:http GET on loopback, parse; debug build)",
        c.elapsed_ms
    );
    let c = judge(&host, &policy, q("prometheus_build_info", ">=", 1.0)).await;
    assert_verdict(&c, Verdict::Passed, "prometheus_build_info{");
    assert!(c.message.contains("version="), "{}", c.message);
    // Always false: the offending series is named with its value.
    let c = judge(&host, &policy, q("up", ">", 5.0)).await;
    assert_verdict(&c, Verdict::Failed, "1 of 1 series not > 5: up{");
    let c = judge(&host, &policy, q("up", "!=", 1.0)).await;
    assert_verdict(&c, Verdict::Failed, "not != 1");
    // between, over a vector and over a scalar.
    let between = |query: &str, min: f64, max: f64| json!({"url": url, "query": query, "comparator": "between", "min": min, "max": max});
    let c = judge(&host, &policy, between("up", 0.5, 1.5)).await;
    assert_verdict(&c, Verdict::Passed, "is between 0.5 and 1.5");
    let c = judge(&host, &policy, between("scalar(up) * 10", 0.0, 5.0)).await;
    assert_verdict(&c, Verdict::Failed, "scalar 10 is not between 0 and 5");
    let c = judge(&host, &policy, q("1 + 1", "==", 2.0)).await;
    assert_verdict(&c, Verdict::Passed, "scalar 2 is == 2");
    assert_eq!(c.value, Some(2.0));
    // No series: a failure unless asked otherwise.
    let c = judge(&host, &policy, q(r#"up{job="nope"}"#, "==", 1.0)).await;
    assert_verdict(&c, Verdict::Failed, "no series: nothing to compare");
    let mut empty_ok = q(r#"up{job="nope"}"#, "==", 1.0);
    empty_ok["pass_if_empty"] = json!(true);
    let c = judge(&host, &policy, empty_ok).await;
    assert_verdict(&c, Verdict::Passed, "no series (pass_if_empty)");
    // A malformed query is the probe's mistake: not applicable, with Prometheus's message.
    let c = judge(&host, &policy, q("up{", "==", 1.0)).await;
    assert_verdict(&c, Verdict::NotApplicable, "prometheus refused the query: ");
    assert!(c.message.contains("parse error"), "{}", c.message);
    assert_eq!(c.not_run.as_ref().unwrap().kind, "invalid");
    // A range vector cannot be compared.
    let c = judge(&host, &policy, q("up[10s]", "==", 1.0)).await;
    assert_verdict(&c, Verdict::NotApplicable, "range vector");
    // Prometheus's own failures to evaluate fail the check, quoting it: `+ 0` drops the
    // metric names, leaving two series with the same labels.
    let c = judge(
        &host,
        &policy,
        q(r#"{__name__=~"up|scrape_samples_scraped"} + 0"#, "==", 1.0),
    )
    .await;
    assert_verdict(&c, Verdict::Failed, "prometheus error (execution): ");
    assert!(c.message.contains("same labelset"), "{}", c.message);
    // Nobody listens there: the service is down, the check fails.
    let c = judge(
        &host,
        &policy,
        json!({"url": format!("http://{dead}"), "query": "up", "comparator": "==", "value": 1, "timeout": "2s"}),
    )
    .await;
    assert_verdict(&c, Verdict::Failed, "connection refused");
    // Not granted: the probe cannot run.
    let c = judge(&host, &reach(&[&dead]), q("up", "==", 1.0)).await;
    assert_eq!(c.verdict, Verdict::NotApplicable, "{c:?}");
    assert_eq!(c.not_run.as_ref().unwrap().kind, "denied", "{c:?}");
    let pid = prom.pid();
    drop(prom);
    assert_eq!(
        faultline_tests::proc_state(pid),
        '?',
        "prometheus outlived its test"
    );
}
