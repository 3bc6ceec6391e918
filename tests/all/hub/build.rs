//! The bundled hub publishes exactly what its sources build: `tests/build.rs` rebuilds every
//! fault and probe from source with the flags of `faultline hub build`, and each digest must
//! equal the one in `hub-index.json` and that of the committed artefact. Nobody can publish an
//! artefact its source does not produce. And every entry publishes what its component says of
//! itself through `describe()`: schema, capabilities, kind, summary, revertible.

use faultline::host::ImportLister;
use faultline::hub::{ComponentImports, Digest, Index, Kind};
use faultline_tests::{components as c, repo_root};
use serde_json::{Value, json};

#[test]
fn the_bundled_hub_matches_what_its_sources_build() {
    let root = repo_root();
    let bytes = std::fs::read(root.join("hub-index.json")).unwrap();
    let index = Index::parse(&bytes, "hub-index.json").unwrap_or_else(|e| panic!("{e}"));
    let built = c::PUBLISHED;
    for (name, path) in built {
        let (name, path) = (*name, *path);
        let from_source = Digest::of(&std::fs::read(path).unwrap());
        let package = index
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not in hub-index.json"));
        let newest = &package.versions[0];
        assert_eq!(
            newest.digest, from_source,
            "{name}: hub-index.json says {}, the source builds {from_source}; run `faultline hub build`",
            newest.digest
        );
        let committed = root.join(&newest.urls[0]);
        let (digest, size) = Digest::of_file(&committed).unwrap();
        assert_eq!(digest, from_source, "{}", committed.display());
        assert_eq!(size, newest.size);
    }
    let names: Vec<&str> = built.iter().map(|(n, _)| *n).collect();
    for p in &index.packages {
        assert!(
            names.contains(&p.name.as_str()),
            "{} is published but no test rebuilds it from source",
            p.name
        );
    }
}

/// Copies the directory tree `from` to `to`, leaving out `target` directories.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &dest);
            }
        } else {
            assert!(
                kind.is_file(),
                "{}: not a plain file",
                entry.path().display()
            );
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Where the repository is checked out must not change the published bytes: CI clones it
/// somewhere else than a developer does. `faults/` (with the SDK inside it) is copied to a
/// directory of another depth and name, and `faultline hub build -p process-pause` there, in a
/// fresh target directory, must reproduce the bundled artefact and leave the copied index as it
/// was. (A path dependency outside the workspace would fail this: cargo hashes its absolute
/// path into every symbol.)
#[test]
fn the_bundled_hub_rebuilds_byte_for_byte_from_another_directory() {
    let root = repo_root();
    let work = tempfile::tempdir().unwrap();
    let elsewhere = work.path().join("some/other/checkout");
    copy_tree(&root.join("faults"), &elsewhere.join("faults"));
    let index = std::fs::read(root.join("hub-index.json")).unwrap();
    std::fs::write(elsewhere.join("hub-index.json"), &index).unwrap();
    let parsed = Index::parse(&index, "hub-index.json").unwrap_or_else(|e| panic!("{e}"));
    let pause = &parsed
        .packages
        .iter()
        .find(|p| p.name == "process-pause")
        .expect("process-pause is bundled")
        .versions[0];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline-e2e"));
    cmd.current_dir(&elsewhere)
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .args(["hub", "build", "faults", "-p", "process-pause"]);
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "hub build in the copy:\n{text}");
    assert!(!text.contains("note:"), "{text}");
    assert!(text.contains(&pause.digest.to_string()), "{text}");
    assert!(text.contains("index unchanged"), "{text}");
    assert_eq!(
        std::fs::read(elsewhere.join("hub-index.json")).unwrap(),
        index,
        "the copied index changed"
    );
    let rebuilt = std::fs::read(elsewhere.join(&pause.urls[0])).unwrap();
    assert_eq!(Digest::of(&rebuilt), pause.digest);
}

/// The committed artefact `url`, loaded through a real host and described.
async fn inspect_committed(host: &faultline::host::Host, url: &str) -> faultline::host::Inspection {
    let bytes = std::fs::read(repo_root().join(url)).unwrap();
    host.inspect(&bytes)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test]
async fn every_bundled_entry_publishes_what_its_component_describes() {
    let root = repo_root();
    let bytes = std::fs::read(root.join("hub-index.json")).unwrap();
    let index = Index::parse(&bytes, "hub-index.json").unwrap_or_else(|e| panic!("{e}"));
    let (host, _dir) = faultline_tests::host();
    let bare = json!({"type": "object"});
    assert!(!index.packages.is_empty());
    for package in &index.packages {
        for release in &package.versions {
            let label = format!("{}@{}", package.name, release.version);
            let schema = Value::Object(release.params_schema.clone());
            assert_ne!(schema, bare, "{label}: params_schema is the bare {bare}");
            let inspection = inspect_committed(&host, &release.urls[0]).await;
            let d = &inspection.description;
            let described: Value = serde_json::from_str(&d.params_schema)
                .unwrap_or_else(|e| panic!("{label}: describe()'s schema: {e}"));
            let properties = schema.get("properties");
            assert!(
                properties
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty()),
                "{label}: params_schema has no properties: {schema}"
            );
            assert_eq!(
                properties,
                described.get("properties"),
                "{label}: the index's properties are not describe()'s"
            );
            assert_eq!(
                schema, described,
                "{label}: the index's schema is not describe()'s"
            );
            // Everything else the component says of itself is what the index says too.
            assert_eq!(d.name, package.name, "{label}");
            assert_eq!(d.version, release.version.to_string(), "{label}");
            // The package's description is its newest release's summary.
            if std::ptr::eq(release, &package.versions[0]) {
                assert_eq!(d.summary, package.description, "{label}");
            }
            assert_eq!(d.revertible, release.revertible, "{label}");
            let kind = match inspection.kind {
                faultline::host::Kind::Fault => Kind::Fault,
                faultline::host::Kind::Probe => Kind::Probe,
            };
            assert_eq!(kind, package.kind, "{label}");
            let declared: Vec<String> = release
                .capabilities
                .iter()
                .map(|c| c.interface.interface().to_string())
                .collect();
            let described_caps: Vec<String> = d
                .capabilities
                .iter()
                .map(|c| {
                    use faultline::contract::types::Capability as W;
                    match c {
                        W::Log => "log",
                        W::Rollback => "rollback",
                        W::Process => "process",
                        W::Cgroup => "cgroup",
                        W::Network => "network",
                        W::Outbound => "outbound",
                    }
                    .to_string()
                })
                // Interfaces the 0.1 enum cannot name are declared by importing them.
                .chain(
                    inspection
                        .shape
                        .capabilities
                        .iter()
                        .filter(|c| !c.declarable())
                        .map(|c| c.interface().to_string()),
                )
                .collect();
            assert_eq!(declared, described_caps, "{label}");
        }
    }
}

#[test]
fn the_import_lister_describes_a_component_from_a_plain_thread_and_the_blocking_pool() {
    let bytes = std::fs::read(repo_root().join("hub/components/process-pause-0.1.0.wasm")).unwrap();
    let lister = ImportLister::new();
    let plain = lister.describe(&bytes).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(plain.name, "process-pause");
    assert_eq!(plain.kind, Kind::Fault);
    assert_eq!(plain.contract, "faultline:contract@0.1.0");
    assert!(plain.revertible);
    assert!(
        plain.params_schema.contains_key("properties"),
        "{:?}",
        plain.params_schema
    );
    // `hub build` runs on tokio's blocking pool: describing there must neither panic nor
    // need the caller's runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task = runtime.spawn_blocking(move || ImportLister::new().describe(&bytes));
    let pooled = runtime
        .block_on(task)
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(pooled, plain);
    // Not a component: an error, not a panic.
    let e = lister.describe(b"not wasm").unwrap_err();
    assert!(format!("{e:#}").contains("loading the component"), "{e:#}");
}
