//! The chaos hub: signed indexes over paths and loopback HTTP, the cache, and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod build;
mod fixture;
mod trust;

use std::sync::Arc;

use faultline::hub::{Digest, HubError, SourceOutcome, TrustedKey};
use serde_json::json;

use fixture::*;

#[tokio::test]
async fn local_hub_resolves_and_pulls_the_newest_release() {
    let f = Fixture::new();
    let (hub, report) = synced(f.config()).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Updated),
        "{report:?}"
    );
    let resolved = hub.resolve("process-pause").unwrap();
    assert_eq!(resolved.release.version.to_string(), "0.2.0");
    let pulled = hub.pull(&resolved, &FakeImports).await.unwrap();
    assert!(!pulled.from_cache);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), f.v2);
    assert_eq!(
        pulled.path,
        f.cache.join("blobs/sha256").join(Digest::of(&f.v2).hex())
    );
    let again = hub.pull(&resolved, &FakeImports).await.unwrap();
    assert!(again.from_cache);
    // The last good index is kept in the cache under the hub id.
    assert!(f.cache.join("indexes/test-hub/hub-index.json").is_file());
    assert!(
        f.cache
            .join("indexes/test-hub/hub-index.json.sig")
            .is_file()
    );
}

#[tokio::test]
async fn references_select_versions_and_pins_override() {
    let f = Fixture::new();
    let (hub, _) = synced(f.config()).await;
    let version = |r: &str| hub.resolve(r).map(|r| r.release.version.to_string());
    assert_eq!(version("process-pause@0.1").unwrap(), "0.1.0");
    assert_eq!(version("process-pause@^0.2").unwrap(), "0.2.0");
    assert_eq!(version("process-pause@=0.1.0").unwrap(), "0.1.0");
    assert_eq!(version("process-pause@<0.2").unwrap(), "0.1.0");
    assert_eq!(version(&Digest::of(&f.v1).to_string()).unwrap(), "0.1.0");
    assert!(matches!(
        hub.resolve("process-pause@^1"),
        Err(HubError::NotFound { .. })
    ));
    assert!(matches!(
        hub.resolve("nope"),
        Err(HubError::NotFound { .. })
    ));
    assert!(matches!(
        hub.resolve("Bad Name"),
        Err(HubError::BadReference { .. })
    ));

    let mut pinned = f.config();
    pinned
        .pins
        .insert("process-pause".into(), semver::Version::new(0, 1, 0));
    let (hub, _) = synced(pinned).await;
    assert_eq!(
        hub.resolve("process-pause")
            .unwrap()
            .release
            .version
            .to_string(),
        "0.1.0"
    );
    let err = hub.resolve("process-pause@^0.2").unwrap_err();
    assert!(err.to_string().contains("pinned to 0.1.0"), "{err}");
}

#[tokio::test]
async fn a_mirror_copied_to_another_directory_verifies_and_loads() {
    let f = Fixture::new();
    let mirror = f.hub_dir.parent().unwrap().join("mirror/copy");
    std::fs::create_dir_all(mirror.join("components")).unwrap();
    for name in [
        "hub-index.json",
        "hub-index.json.sig",
        "components/process-pause-0.1.0.wasm",
        "components/process-pause-0.2.0.wasm",
    ] {
        std::fs::copy(f.hub_dir.join(name), mirror.join(name)).unwrap();
    }
    std::fs::remove_dir_all(&f.hub_dir).unwrap();
    let source = format!("file://{}", mirror.display());
    let cache = mirror.parent().unwrap().join("cache");
    let (hub, report) = synced(config(&cache, &[source], &[&f.signer], 1)).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Updated),
        "{report:?}"
    );
    let pulled = hub
        .pull(&hub.resolve("process-pause@=0.1.0").unwrap(), &FakeImports)
        .await
        .unwrap();
    assert_eq!(std::fs::read(pulled.path).unwrap(), f.v1);
}

#[tokio::test]
async fn http_hub_revalidates_with_etags() {
    let f = Fixture::new();
    let server = f.serve().await;
    let cfg = config(&f.cache, &[server.url("hub/")], &[&f.signer], 1);
    let (hub, report) = synced(cfg.clone()).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Updated),
        "{report:?}"
    );
    hub.pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap();
    let (_, report) = synced(cfg.clone()).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Current),
        "{report:?}"
    );
    assert_eq!(server.statuses("hub/hub-index.json"), [200, 304]);

    // A new index is fetched whole and replaces the cached one.
    f.publish(2, DAY, f.packages());
    f.upload(&server);
    let (hub, report) = synced(cfg).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Updated),
        "{report:?}"
    );
    assert_eq!(hub.indexes()[0].index.serial, 2);
    assert_eq!(server.statuses("hub/hub-index.json"), [200, 304, 200]);
}

#[tokio::test]
async fn everything_works_offline_from_the_cache_once_the_server_is_gone() {
    let f = Fixture::new();
    let server = f.serve().await;
    let cfg = config(
        &f.cache,
        &[server.url("hub/hub-index.json")],
        &[&f.signer],
        1,
    );
    let (hub, _) = synced(cfg.clone()).await;
    hub.pull(&hub.resolve("process-pause@0.2").unwrap(), &FakeImports)
        .await
        .unwrap();
    server.shutdown();

    // The sync fails, the last good index stays in use, the cached blob serves the pull.
    let (hub, report) = synced(cfg.clone()).await;
    assert!(
        matches!(
            &report.sources[0].outcome,
            SourceOutcome::Stale(HubError::Fetch { .. })
        ),
        "{report:?}"
    );
    let pulled = hub
        .pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap();
    assert!(pulled.from_cache);
    // What was never pulled cannot be had.
    let err = hub
        .pull(&hub.resolve("process-pause@=0.1.0").unwrap(), &FakeImports)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Fetch { .. }), "{err}");

    // Explicitly offline: no network at all.
    let mut offline = cfg;
    offline.offline = true;
    let (hub, report) = synced(offline).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Cached),
        "{report:?}"
    );
    let err = hub
        .pull(&hub.resolve("process-pause@=0.1.0").unwrap(), &FakeImports)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
}

#[tokio::test]
async fn concurrent_pulls_of_one_artefact_do_not_corrupt_the_cache() {
    let f = Fixture::new();
    let server = f.serve().await;
    let cfg = config(&f.cache, &[server.url("hub/")], &[&f.signer], 1);
    let (hub, _) = synced(cfg).await;
    let hub = Arc::new(hub);
    let resolved = hub.resolve("process-pause").unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let hub = hub.clone();
            let resolved = resolved.clone();
            tokio::spawn(async move { hub.pull(&resolved, &FakeImports).await })
        })
        .collect();
    let mut paths = Vec::new();
    for task in tasks {
        paths.push(task.await.unwrap().unwrap().path);
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), f.v2);
    // Only the blob: no temporary file is left behind.
    let entries: Vec<_> = std::fs::read_dir(f.cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [Digest::of(&f.v2).hex()]);
}

#[tokio::test]
async fn wrong_bytes_from_the_server_are_refused() {
    let f = Fixture::new();
    let server = f.serve().await;
    server.serve_wrong_bytes("hub/components/process-pause-0.2.0.wasm");
    let (hub, _) = synced(config(&f.cache, &[server.url("hub/")], &[&f.signer], 1)).await;
    let err = hub
        .pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("process-pause@0.2.0"), "{err}");
    assert!(
        !f.cache
            .join("blobs/sha256")
            .join(Digest::of(&f.v2).hex())
            .exists()
    );
}

#[tokio::test]
async fn size_mismatches_are_refused() {
    let f = Fixture::new();
    let mut packages = f.packages();
    packages[0]["versions"][0]["size"] = json!(f.v2.len() - 1);
    packages[0]["versions"][1]["size"] = json!(f.v1.len() + 1);
    f.publish(1, DAY, packages);
    let server = f.serve().await;
    let (hub, _) = synced(config(&f.cache, &[server.url("hub/")], &[&f.signer], 1)).await;
    for reference in ["process-pause@=0.2.0", "process-pause@=0.1.0"] {
        let err = hub
            .pull(&hub.resolve(reference).unwrap(), &FakeImports)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HubError::SizeMismatch { .. }),
            "{reference}: {err}"
        );
    }
}

#[tokio::test]
async fn a_corrupted_cached_blob_is_fetched_again() {
    let f = Fixture::new();
    let (hub, _) = synced(f.config()).await;
    let resolved = hub.resolve("process-pause").unwrap();
    let path = hub.pull(&resolved, &FakeImports).await.unwrap().path;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    let pulled = hub.pull(&resolved, &FakeImports).await.unwrap();
    assert!(!pulled.from_cache);
    assert_eq!(std::fs::read(&path).unwrap(), f.v2);
}

#[tokio::test]
async fn a_missing_signature_is_refused() {
    let f = Fixture::new();
    std::fs::remove_file(f.hub_dir.join("hub-index.json.sig")).unwrap();
    let (hub, report) = synced(f.config()).await;
    assert!(
        matches!(failure(&report), HubError::MissingSignature { .. }),
        "{report:?}"
    );
    assert!(hub.indexes().is_empty());
    // Accepted when the operator asks for no signatures.
    let mut unsigned = f.config();
    unsigned.required_signatures = Some(0);
    let (hub, _) = synced(unsigned).await;
    assert_eq!(hub.indexes().len(), 1);
}

#[tokio::test]
async fn an_altered_index_fails_its_signature() {
    let f = Fixture::new();
    let path = f.hub_dir.join("hub-index.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&path, &bytes).unwrap();
    let (_, report) = synced(f.config()).await;
    let err = failure(&report);
    assert!(
        matches!(err, HubError::BadSignature { key_id, .. } if key_id == "k1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_signature_by_an_untrusted_key_is_refused() {
    let f = Fixture::new();
    let stranger = Signer::new("k1"); // Same id, different key.
    let (_, report) = synced(config(&f.cache, &[f.source()], &[&stranger], 1)).await;
    assert!(
        matches!(failure(&report), HubError::BadSignature { .. }),
        "{report:?}"
    );
    let other = Signer::new("other");
    let (_, report) = synced(config(&f.cache, &[f.source()], &[&other], 1)).await;
    let err = failure(&report);
    assert!(
        matches!(err, HubError::UntrustedSigner { key_ids, .. } if key_ids == "k1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_threshold_of_two_needs_two_distinct_trusted_keys() {
    let f = Fixture::new();
    let second = Signer::new("k2");
    let cfg = config(&f.cache, &[f.source()], &[&f.signer, &second], 2);
    let (_, report) = synced(cfg.clone()).await;
    assert!(
        matches!(
            failure(&report),
            HubError::NotEnoughSignatures {
                valid: 1,
                required: 2,
                ..
            }
        ),
        "{report:?}"
    );
    let bytes = std::fs::read(f.hub_dir.join("hub-index.json")).unwrap();
    std::fs::write(
        f.hub_dir.join("hub-index.json.sig"),
        signatures(&bytes, &[&f.signer, &second]),
    )
    .unwrap();
    let (hub, report) = synced(cfg).await;
    assert!(
        matches!(report.sources[0].outcome, SourceOutcome::Updated),
        "{report:?}"
    );
    assert_eq!(hub.indexes()[0].signatures, 2);
}

#[tokio::test]
async fn a_lower_serial_is_refused_as_a_rollback() {
    let f = Fixture::new();
    f.publish(5, DAY, f.packages());
    let (_, report) = synced(f.config()).await;
    assert!(matches!(report.sources[0].outcome, SourceOutcome::Updated));

    f.publish(4, DAY, f.packages());
    let (hub, report) = synced(f.config()).await;
    let err = failure(&report);
    assert!(
        matches!(
            err,
            HubError::Rollback {
                seen: 5,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    // The last good index stays in use.
    assert_eq!(hub.indexes()[0].index.serial, 5);
    // The serial seen is persisted: a fresh source with the same hub id is refused too.
    let other = f.hub_dir.parent().unwrap().join("other");
    let bytes = index(3, DAY, f.packages());
    write_hub(&other, &bytes, Some(&signatures(&bytes, &[&f.signer])), &[]);
    let err = hub
        .sync_source(&faultline::hub::Source::Path(other.join("hub-index.json")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Rollback {
                seen: 5,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_index_is_refused_unless_allowed() {
    let f = Fixture::new();
    f.publish(1, -60, f.packages());
    let (_, report) = synced(f.config()).await;
    let err = failure(&report);
    assert!(matches!(err, HubError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("allow_expired"), "{err}");
    let mut allow = f.config();
    allow.allow_expired = true;
    let (hub, _) = synced(allow).await;
    assert!(hub.resolve("process-pause").is_ok());
}

#[tokio::test]
async fn urls_escaping_the_hub_are_refused() {
    let f = Fixture::new();
    let secret = f.hub_dir.parent().unwrap().join("secret.wasm");
    std::fs::write(&secret, &f.v1).unwrap();
    for url in [
        "../secret.wasm",
        "components/../../secret.wasm",
        secret.to_str().unwrap(),
        "file:///etc/passwd",
    ] {
        let mut packages = f.packages();
        packages[0]["versions"][1]["urls"] = json!([url]);
        f.publish(1, DAY, packages);
        let cache = f.cache.join(Digest::of(url.as_bytes()).hex());
        let (hub, _) = synced(config(&cache, &[f.source()], &[&f.signer], 1)).await;
        let err = hub
            .pull(&hub.resolve("process-pause@=0.1.0").unwrap(), &FakeImports)
            .await
            .unwrap_err();
        assert!(matches!(err, HubError::PathEscape { .. }), "{url}: {err}");
    }
}

#[tokio::test]
async fn yanked_releases_are_refused_unless_pinned_exactly() {
    let f = Fixture::new();
    let mut packages = f.packages();
    packages[0]["versions"][0]["yanked"] = json!({"reason": "kills the wrong process"});
    f.publish(1, DAY, packages.clone());
    let (hub, _) = synced(f.config()).await;
    // The newest non-yanked release is chosen.
    assert_eq!(
        hub.resolve("process-pause")
            .unwrap()
            .release
            .version
            .to_string(),
        "0.1.0"
    );
    let err = hub.resolve("process-pause@^0.2").unwrap_err();
    assert!(matches!(err, HubError::Yanked { .. }), "{err}");
    assert!(err.to_string().contains("kills the wrong process"), "{err}");
    let exact = hub.resolve("process-pause@=0.2.0").unwrap();
    assert!(exact.warnings[0].contains("yanked"), "{:?}", exact.warnings);
    assert!(hub.resolve(&Digest::of(&f.v2).to_string()).is_ok());

    let mut pinned = f.config();
    pinned
        .pins
        .insert("process-pause".into(), semver::Version::new(0, 2, 0));
    let (hub, _) = synced(pinned).await;
    let resolved = hub.resolve("process-pause").unwrap();
    assert_eq!(resolved.release.version.to_string(), "0.2.0");
    hub.pull(&resolved, &FakeImports).await.unwrap();
}

#[tokio::test]
async fn imports_beyond_the_declared_capabilities_are_refused() {
    let f = Fixture::new();
    let mut packages = f.packages();
    // 0.2.0 imports log but now declares only process.
    packages[0]["versions"][0]["capabilities"] = json!([{"interface": "process"}]);
    f.publish(1, DAY, packages);
    let (hub, _) = synced(f.config()).await;
    let err = hub
        .pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::UndeclaredImport { .. }), "{err}");
    assert!(
        err.to_string().contains("faultline:contract/log@0.1.0"),
        "{err}"
    );
}

#[tokio::test]
async fn curation_patterns_and_the_capability_ceiling_apply() {
    let f = Fixture::new();
    let mut deny = f.config();
    deny.deny = vec!["process-*".into()];
    let (hub, _) = synced(deny).await;
    let err = hub.resolve("process-pause").unwrap_err();
    assert!(matches!(err, HubError::Denied { .. }), "{err}");
    assert!(err.to_string().contains("process-*"), "{err}");
    assert!(matches!(
        hub.resolve(&Digest::of(&f.v1).to_string()),
        Err(HubError::Denied { .. })
    ));

    let mut allow = f.config();
    allow.allow = vec!["network-*".into()];
    let (hub, _) = synced(allow).await;
    assert!(matches!(
        hub.resolve("process-pause"),
        Err(HubError::Denied { .. })
    ));

    let mut ceiling = f.config();
    ceiling.capabilities = Some(vec![faultline::hub::Capability::Process]);
    let (hub, _) = synced(ceiling).await;
    let err = hub.resolve("process-pause").unwrap_err();
    assert!(matches!(err, HubError::AboveCeiling { .. }), "{err}");
    assert!(err.to_string().contains("`log`"), "{err}");
    assert!(hub.resolve("process-pause@0.1").is_ok());
}

#[tokio::test]
async fn cli_keygen_sign_verify_and_lint() {
    use faultline::cli::hub::{HubCommand, SyncArgs};
    let hub_cmd = |cmd: HubCommand, cfg: &faultline::hub::HubConfig| {
        let cfg = cfg.clone();
        async move {
            let mut out = Vec::new();
            let code = faultline::cli::hub::run(cmd, &cfg, Arc::new(FakeImports), &mut out)
                .await
                .unwrap();
            (code, String::from_utf8(out).unwrap())
        }
    };
    let f = Fixture::new();
    let key = f.hub_dir.parent().unwrap().join("curator.pem");
    let cfg = f.config();
    let (code, text) = hub_cmd(
        HubCommand::Keygen {
            out: key.clone(),
            id: None,
            force: false,
        },
        &cfg,
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("[[hub.trusted_keys]]"), "{text}");
    let public = std::fs::read_to_string(key.with_extension("pem.pub")).unwrap();
    let index_path = f.hub_dir.join("hub-index.json");
    let sign = HubCommand::Sign {
        key: key.clone(),
        key_id: None,
        index: index_path.clone(),
    };
    assert_eq!(hub_cmd(sign, &cfg).await.0, 0);

    let mut two = cfg.clone();
    two.trusted_keys.push(TrustedKey {
        id: "curator".into(),
        key: public,
    });
    two.required_signatures = Some(2);
    let verify = |c| HubCommand::Verify {
        index: c,
        sync: SyncArgs::default(),
    };
    assert_eq!(hub_cmd(verify(Some(index_path.clone())), &two).await.0, 0);
    assert_eq!(hub_cmd(verify(None), &two).await.0, 0);
    assert_eq!(
        hub_cmd(
            HubCommand::Lint {
                index: index_path.clone()
            },
            &cfg
        )
        .await
        .0,
        0
    );

    // A component that no longer matches its digest fails verify and lint.
    std::fs::write(
        f.hub_dir.join("components/process-pause-0.1.0.wasm"),
        b"tampered",
    )
    .unwrap();
    assert_eq!(hub_cmd(verify(Some(index_path.clone())), &two).await.0, 1);
    assert_eq!(
        hub_cmd(HubCommand::Lint { index: index_path }, &cfg)
            .await
            .0,
        1
    );
    // A usage problem is exit code 2.
    let pull = HubCommand::Pull {
        reference: "Not A Name".into(),
        sync: SyncArgs::default(),
    };
    assert_eq!(hub_cmd(pull, &cfg).await.0, 2);
}

#[tokio::test]
async fn fetch_component_returns_the_verified_bytes_and_their_provenance() {
    let f = Fixture::new();
    let (hub, problems) = faultline::hub::open_hub(f.config()).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let fetched = hub
        .fetch_component("process-pause@^0.2", &FakeImports)
        .await
        .unwrap();
    assert_eq!(fetched.bytes, f.v2);
    assert_eq!(fetched.kind, faultline::hub::Kind::Fault);
    assert_eq!(
        fetched.identity,
        faultline::policy::Identity::from_hub(
            "test-hub",
            "process-pause",
            semver::Version::new(0, 2, 0),
            &Digest::of(&f.v2).to_string()
        )
    );
    let pulled = hub
        .pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap();
    assert_eq!(pulled.hub, "test-hub");

    // A release above max_component_bytes is refused before anything is read.
    let mut small = f.config();
    small.max_component_bytes = f.v2.len() as u64 - 1;
    small.cache_dir = Some(f.cache.join("small"));
    let (hub, _) = faultline::hub::open_hub(small).await.unwrap();
    let err = hub
        .fetch_component("process-pause@^0.2", &FakeImports)
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::TooLarge { .. }), "{err}");
    assert!(
        !f.cache
            .join("small/blobs/sha256")
            .join(Digest::of(&f.v2).hex())
            .exists()
    );
}

#[tokio::test]
async fn a_cached_blob_is_hashed_again_when_fetched() {
    let f = Fixture::new();
    let (hub, _) = faultline::hub::open_hub(f.config()).await.unwrap();
    let pulled = hub
        .pull(&hub.resolve("process-pause").unwrap(), &FakeImports)
        .await
        .unwrap();
    // Same size, different bytes: the cache check drops it and fetches it again.
    std::fs::remove_file(&pulled.path).unwrap();
    let mut forged = f.v2.clone();
    forged[0] ^= 1;
    std::fs::write(&pulled.path, &forged).unwrap();
    let fetched = hub
        .fetch_component("process-pause", &FakeImports)
        .await
        .unwrap();
    assert_eq!(fetched.bytes, f.v2);
}

#[tokio::test]
async fn an_unsigned_source_is_refused_when_the_threshold_is_not_stated() {
    let f = Fixture::new();
    std::fs::remove_file(f.hub_dir.join("hub-index.json.sig")).unwrap();
    let mut cfg = f.config();
    cfg.trusted_keys.clear();
    cfg.required_signatures = None;
    let err = faultline::hub::open_hub(cfg.clone()).await.unwrap_err();
    assert!(
        matches!(err, HubError::MissingSignature { required: 1, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("no signature from a trusted key"),
        "{message}"
    );
    assert!(message.contains(&f.source()), "{message}");

    // Beside the bundled hub: the bundled packages resolve, this hub's do not, and the
    // "not found" names the refusal.
    cfg.sources.insert(0, faultline::hub::BUNDLED.into());
    let (hub, problems) = faultline::hub::open_hub(cfg).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(hub.indexes().len(), 1);
    assert_eq!(
        hub.indexes()[0].index.hub.id,
        faultline::hub::BUNDLED_HUB_ID
    );
    let err = hub.resolve("process-pause@^0.2").unwrap_err();
    assert!(
        err.to_string().contains("no signature from a trusted key"),
        "{err}"
    );
}

#[tokio::test]
async fn no_other_source_may_claim_the_bundled_hub_id() {
    let f = Fixture::new();
    let bytes = String::from_utf8(index(1, DAY, f.packages()))
        .unwrap()
        .replace(
            "\"test-hub\"",
            &format!("\"{}\"", faultline::hub::BUNDLED_HUB_ID),
        )
        .into_bytes();
    write_hub(
        &f.hub_dir,
        &bytes,
        Some(&signatures(&bytes, &[&f.signer])),
        &[],
    );
    let (hub, report) = synced(f.config()).await;
    let err = failure(&report);
    assert!(matches!(err, HubError::ReservedHubId { .. }), "{err}");
    assert!(hub.indexes().is_empty());
}

#[tokio::test]
async fn the_bundled_hub_is_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = faultline::hub::HubConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let (hub, problems) = faultline::hub::open_hub(cfg).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(faultline_tests::repo_root().join("hub-index.json")).unwrap(),
    )
    .unwrap();
    let newest = index["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "process-kill")
        .unwrap()["versions"][0]["urls"][0]
        .as_str()
        .unwrap()
        .to_string();
    let bundled = faultline_tests::repo_root().join(newest);
    // Real components: their imports are read by the host's lister.
    let imports = faultline::host::ImportLister::new();
    let fetched = hub.fetch_component("process-kill", &imports).await.unwrap();
    assert_eq!(fetched.bytes, std::fs::read(bundled).unwrap());
    let origin = fetched.identity.origin.unwrap();
    assert_eq!(origin.hub, faultline::hub::BUNDLED_HUB_ID);
    assert_eq!(origin.name, "process-kill");
    // Nothing about the bundled hub is cached but its blobs: its index lives in the binary.
    assert!(
        std::fs::read_dir(dir.path().join("indexes"))
            .unwrap()
            .next()
            .is_none()
    );
}
