//! Contract compatibility: every artefact published against `faultline:contract@0.1.0` (the
//! bundled hub's `*-0.1.0.wasm`) loads on this 0.1.1 host unchanged, and runs.

use faultline::execution::{Execution, Spec, StopReason};
use faultline::host::Kind;
use faultline::policy::Policy;
use faultline_tests::netns::{A_IF, B_ADDR, NetPair, udp_delivery};
use faultline_tests::{Sleeper, host, policy_for_pids, repo_root};
use std::sync::Arc;
use std::time::Duration;

/// The bundled hub's 0.1.0 artefacts: (file name, bytes).
fn published_0_1_0() -> Vec<(String, Vec<u8>)> {
    // The releases the index says were built against contract 0.1.0 (components first published
    // later start at 0.1.0 too, built against 0.1.1).
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("hub-index.json")).unwrap())
            .unwrap();
    let mut all: Vec<(String, Vec<u8>)> = index["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["versions"].as_array().unwrap().iter())
        .filter(|r| r["contract"] == "faultline:contract@0.1.0")
        .map(|r| {
            let url = r["urls"][0].as_str().unwrap();
            let name = url.rsplit('/').next().unwrap().to_string();
            (name, std::fs::read(repo_root().join(url)).unwrap())
        })
        .collect();
    all.sort();
    all
}

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(format!("hub/components/{name}-0.1.0.wasm"))).unwrap()
}

#[tokio::test]
async fn every_published_0_1_0_artefact_loads_on_this_host() {
    let (host, _d) = host();
    let everything = Policy::parse(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"process\", \"cgroup\", \"network\", \"outbound\"]\n",
    )
    .unwrap();
    let published = published_0_1_0();
    assert!(published.len() >= 16, "{} artefacts", published.len());
    for (file, bytes) in &published {
        let inspection = host
            .inspect(bytes)
            .await
            .unwrap_or_else(|e| panic!("{file} refused: {e}"));
        let name = file.trim_end_matches("-0.1.0.wasm");
        let kind = if name.starts_with("probe-") {
            Kind::Probe
        } else {
            Kind::Fault
        };
        assert_eq!(inspection.kind, kind, "{file}");
        assert_eq!(
            (
                inspection.description.name.as_str(),
                inspection.description.version.as_str()
            ),
            (name, "0.1.0")
        );
        let contract: Vec<&String> = inspection
            .shape
            .imports
            .iter()
            .filter(|i| i.starts_with("faultline:contract/"))
            .collect();
        assert!(!contract.is_empty(), "{file}");
        assert!(
            contract.iter().all(|i| i.ends_with("@0.1.0")),
            "{file}: {contract:?}"
        );
        assert!(!inspection.shape.ticks, "{file}");
        let identity = faultline_tests::identity(bytes);
        assert!(identity.origin.is_some(), "{file} is not in hub-index.json");
        let loaded = host.load(bytes, &identity, &everything).await;
        assert!(
            loaded.is_ok(),
            "{file}: {:?}",
            loaded.err().map(|e| e.to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pause_0_1_0_injects_and_reverts_on_this_host() {
    let target = Sleeper::start();
    let (host, _d) = host();
    let bytes = bundled("process-pause");
    let plugin = faultline_tests::load_fault(&host, &bytes, &policy_for_pids(&[target.pid()]))
        .await
        .unwrap();
    assert_eq!(plugin.label(), "process-pause@0.1.0");
    assert!(!plugin.ticks());
    let execution = Execution::new(
        Arc::new(host),
        Arc::new(plugin),
        Spec {
            id: faultline::execution::new_id(),
            params: format!(r#"{{"pid": {}}}"#, target.pid()),
            duration: Duration::from_millis(400),
            lease: None,
        },
    );
    let handle = execution.handle();
    let task = tokio::spawn(execution.run());
    faultline_tests::injected(&handle).await;
    assert_eq!(target.state(), 'T');
    let outcome = task.await.unwrap();
    assert_eq!(outcome.reason, StopReason::DurationOver);
    assert!(outcome.injected && outcome.is_clean(), "{outcome:?}");
    assert_eq!((outcome.changes, outcome.ticks), (1, 0));
    assert_eq!(target.state(), 'S');
}

#[tokio::test]
async fn network_blackhole_0_1_0_drops_and_reverts_on_this_host() {
    if !faultline_tests::privileged("network_blackhole_0_1_0_drops_and_reverts_on_this_host") {
        return;
    }
    let pair = NetPair::new("fcompat");
    let before = pair.snapshot();
    let (host, _d) = host();
    let policy = Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"network\"]\nnetwork = {{ namespaces = [\"named:flt-*\"], interfaces = [\"{A_IF}\"] }}\n"
    ))
    .unwrap();
    let plugin = faultline_tests::load_fault(&host, &bundled("network-blackhole"), &policy)
        .await
        .unwrap();
    assert_eq!(plugin.label(), "network-blackhole@0.1.0");
    let params = format!(
        r#"{{"netns": "{}", "interfaces": ["{A_IF}"], "destinations": ["{B_ADDR}/32"], "ports": ["7700"], "protocol": "udp"}}"#,
        pair.a
    );
    plugin.validate(&host, &params).await.unwrap();
    let injected = plugin
        .inject(&host, "ex-compat", &params, Duration::from_secs(5))
        .await
        .unwrap();
    let (during, _) = udp_delivery(&pair, 7700, 100);
    let reverted = plugin
        .revert(&host, "ex-compat", Some(&injected.state))
        .await;
    assert_eq!(reverted.guest_error, None);
    assert!(reverted.is_clean(), "{:?}", reverted.failures);
    assert_eq!(pair.snapshot(), before, "revert left something behind");
    assert_eq!(during, 0, "the 0.1.0 blackhole let packets through");
    assert_eq!(udp_delivery(&pair, 7700, 100).0, 100, "loss after revert");
    assert!(host.journal().outstanding(None).is_empty());
}

#[test]
fn inspect_shows_a_0_1_0_artefact_imports_the_0_1_0_contract() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo_root().join("hub/components/process-pause-0.1.0.wasm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline-e2e"))
        .arg("--state-dir")
        .arg(dir.path())
        .arg("inspect")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("faultline:contract/process@0.1.0"), "{text}");
    assert!(text.contains("verdict      ok"), "{text}");
}
