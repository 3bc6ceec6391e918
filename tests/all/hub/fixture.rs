//! Fixtures for hub tests: fake components, signed index files, hub directories, configs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use faultline::hub::{
    ComponentImports, Digest, Hub, HubConfig, HubError, SourceOutcome, TrustedKey, sign,
};
use faultline_tests::hubserver::HubServer;
use serde_json::{Value, json};

/// Fake components: the first line is a marker, each further line an imported interface.
pub(crate) struct FakeImports;

impl ComponentImports for FakeImports {
    fn imported_interfaces(&self, wasm: &[u8]) -> anyhow::Result<Vec<String>> {
        let text = std::str::from_utf8(wasm)?;
        let mut lines = text.lines();
        anyhow::ensure!(
            lines.next() == Some("fake-component"),
            "not a fake component"
        );
        Ok(lines.map(str::to_string).collect())
    }

    fn describe(&self, _: &[u8]) -> anyhow::Result<faultline::hub::build::Described> {
        anyhow::bail!("a fake component has no describe() to run")
    }
}

pub(crate) fn component(tag: &str, imports: &[&str]) -> Vec<u8> {
    let mut text = String::from("fake-component\n");
    for import in imports {
        text.push_str(import);
        text.push('\n');
    }
    // The tag makes every component's bytes distinct.
    text.push_str(&format!("wasi:cli/environment@0.2.6#{tag}\n"));
    text.into_bytes()
}

pub(crate) const PROCESS: &str = "faultline:contract/process@0.1.0";

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A release entry for `bytes` at `url`.
pub(crate) fn release(version: &str, bytes: &[u8], url: &str, caps: &[&str]) -> Value {
    json!({
        "version": version,
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
        "urls": [url],
        "contract": "faultline:contract@0.1.0",
        "capabilities": caps.iter().map(|c| json!({"interface": c})).collect::<Vec<_>>(),
        "params_schema": {"type": "object", "properties": {"duration": {"type": "string", "default": "30s"}}},
        "revertible": true
    })
}

pub(crate) fn package(name: &str, versions: Vec<Value>) -> Value {
    json!({
        "name": name,
        "kind": "fault",
        "description": format!("{name} for tests"),
        "categories": ["process"],
        "versions": versions
    })
}

pub(crate) fn index(serial: u64, expires_in: i64, packages: Vec<Value>) -> Vec<u8> {
    let now = SystemTime::now();
    let expires = if expires_in >= 0 {
        now + Duration::from_secs(expires_in as u64)
    } else {
        now - Duration::from_secs((-expires_in) as u64)
    };
    let value = json!({
        "schema_version": 1,
        "hub": {"id": "test-hub", "name": "Test hub"},
        "serial": serial,
        "generated": rfc3339(now - Duration::from_secs(60)),
        "expires": rfc3339(expires),
        "runtime": "*",
        "packages": packages
    });
    let mut bytes = serde_json::to_vec_pretty(&value).unwrap();
    bytes.push(b'\n');
    bytes
}

pub(crate) const DAY: i64 = 86_400;

/// A signer: a key and the id agents know it by.
pub(crate) struct Signer {
    pub(crate) id: &'static str,
    pub(crate) key: sign::SigningKey,
}

impl Signer {
    pub(crate) fn new(id: &'static str) -> Self {
        Signer {
            id,
            key: sign::generate_key(),
        }
    }

    pub(crate) fn trusted(&self) -> TrustedKey {
        TrustedKey {
            id: self.id.into(),
            key: sign::public_key_base64(&self.key.verifying_key()),
        }
    }
}

/// The signature file over `index` by `signers`.
pub(crate) fn signatures(index: &[u8], signers: &[&Signer]) -> Vec<u8> {
    let mut file: Option<Vec<u8>> = None;
    for s in signers {
        file = Some(sign::add_signature(file.as_deref(), sign::sign(index, &s.key, s.id)).unwrap());
    }
    file.unwrap_or_else(|| b"[]".to_vec())
}

/// A hub directory: the index, its signature (if any) and components at relative URLs.
pub(crate) fn write_hub(
    dir: &Path,
    index: &[u8],
    sig: Option<&[u8]>,
    files: &[(&str, &[u8])],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("hub-index.json");
    std::fs::write(&path, index).unwrap();
    let sig_path = dir.join("hub-index.json.sig");
    match sig {
        Some(sig) => std::fs::write(&sig_path, sig).unwrap(),
        None => {
            let _ = std::fs::remove_file(&sig_path);
        }
    }
    for (url, bytes) in files {
        let file = dir.join(url);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    path
}

pub(crate) fn config(
    cache: &Path,
    sources: &[String],
    keys: &[&Signer],
    required: usize,
) -> HubConfig {
    HubConfig {
        sources: sources.iter().map(|s| s.as_str().into()).collect(),
        trusted_keys: keys.iter().map(|s| s.trusted()).collect(),
        required_signatures: Some(required),
        cache_dir: Some(cache.to_path_buf()),
        timeout_secs: 5,
        ..HubConfig::default()
    }
}

/// A standard one-package hub: `process-pause` 0.1.0 and 0.2.0.
pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) hub_dir: PathBuf,
    pub(crate) cache: PathBuf,
    pub(crate) signer: Signer,
    pub(crate) v1: Vec<u8>,
    pub(crate) v2: Vec<u8>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let hub_dir = tmp.path().join("hub");
        let cache = tmp.path().join("cache");
        let v1 = component("v1", &[PROCESS]);
        let v2 = component("v2", &[PROCESS, "faultline:contract/log@0.1.0"]);
        let fixture = Fixture {
            _tmp: tmp,
            hub_dir,
            cache,
            signer: Signer::new("k1"),
            v1,
            v2,
        };
        fixture.publish(1, DAY, fixture.packages());
        fixture
    }

    pub(crate) fn packages(&self) -> Vec<Value> {
        vec![package(
            "process-pause",
            vec![
                release(
                    "0.2.0",
                    &self.v2,
                    "components/process-pause-0.2.0.wasm",
                    &["process", "log"],
                ),
                release(
                    "0.1.0",
                    &self.v1,
                    "components/process-pause-0.1.0.wasm",
                    &["process"],
                ),
            ],
        )]
    }

    /// Writes a signed index with these packages, and the components.
    pub(crate) fn publish(&self, serial: u64, expires_in: i64, packages: Vec<Value>) -> Vec<u8> {
        let bytes = index(serial, expires_in, packages);
        write_hub(
            &self.hub_dir,
            &bytes,
            Some(&signatures(&bytes, &[&self.signer])),
            &[
                ("components/process-pause-0.1.0.wasm", &self.v1),
                ("components/process-pause-0.2.0.wasm", &self.v2),
            ],
        );
        bytes
    }

    pub(crate) fn source(&self) -> String {
        self.hub_dir.display().to_string()
    }

    pub(crate) fn config(&self) -> HubConfig {
        config(&self.cache, &[self.source()], &[&self.signer], 1)
    }

    /// Serves the hub directory's files on a loopback server.
    pub(crate) async fn serve(&self) -> HubServer {
        let server = HubServer::start().await;
        self.upload(&server);
        server
    }

    pub(crate) fn upload(&self, server: &HubServer) {
        for name in [
            "hub-index.json",
            "hub-index.json.sig",
            "components/process-pause-0.1.0.wasm",
            "components/process-pause-0.2.0.wasm",
        ] {
            if let Ok(bytes) = std::fs::read(self.hub_dir.join(name)) {
                server.put(&format!("hub/{name}"), bytes);
            }
        }
    }
}

pub(crate) async fn synced(config: HubConfig) -> (Hub, faultline::hub::SyncReport) {
    let mut hub = Hub::open(config).unwrap();
    let report = hub.sync().await;
    (hub, report)
}

pub(crate) fn failure(report: &faultline::hub::SyncReport) -> &HubError {
    match &report.sources[0].outcome {
        SourceOutcome::Failed(e) | SourceOutcome::Stale(e) => e,
        other => panic!("expected a failure, got {other}"),
    }
}
