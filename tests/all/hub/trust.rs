//! Trust through the real binary: `--config` reaches every command, an unsigned hub other than
//! the bundled one is refused unless its configuration says `required_signatures = 0`,
//! `hub verify` verifies nothing without a trusted key, and a copied binary carries its hub.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faultline::hub::sign;
use faultline_tests::repo_root;
use serde_json::json;

use super::fixture::{DAY, Signer, rfc3339, signatures};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

/// The binary with a fresh state directory and no configuration from the environment.
fn faultline(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .env_remove("FAULTLINE_CONFIG")
        .env_remove("FAULTLINE_STATE_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A hub of its own (`lab`) at `dir`, publishing the real `process-pause` component under
/// `name`, unsigned. Returns the index path.
fn lab_hub(dir: &Path, name: &str) -> PathBuf {
    let root = repo_root();
    let bundled: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("hub-index.json")).unwrap()).unwrap();
    let mut package = bundled["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "process-pause")
        .unwrap()
        .clone();
    package["name"] = json!(name);
    // The newest release alone, served from a directory of its own.
    package["versions"] = json!([package["versions"][0].clone()]);
    let file = package["versions"][0]["urls"][0]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    package["versions"][0]["urls"] = json!([format!("components/{file}")]);
    let now = std::time::SystemTime::now();
    let index = json!({
        "schema_version": 1,
        "hub": {"id": "lab", "name": "Lab hub"},
        "serial": 1,
        "generated": rfc3339(now - std::time::Duration::from_secs(60)),
        "expires": rfc3339(now + std::time::Duration::from_secs(DAY as u64)),
        "runtime": "*",
        "packages": [package]
    });
    std::fs::create_dir_all(dir.join("components")).unwrap();
    std::fs::copy(
        root.join("hub/components").join(&file),
        dir.join("components").join(&file),
    )
    .unwrap();
    let path = dir.join("hub-index.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    path
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("faultline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn trusted_key_toml(signer: &Signer) -> String {
    format!(
        "[[hub.trusted_keys]]\nid = \"{}\"\nkey = \"{}\"\n",
        signer.id,
        sign::public_key_base64(&signer.key.verifying_key())
    )
}

#[test]
fn an_unsigned_hub_is_refused_through_the_cli_unless_0_signatures_is_stated() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let index = lab_hub(&lab, "process-pause");
    let config = write_config(
        dir.path(),
        &format!("[hub]\nsources = [{:?}]\n", lab.display().to_string()),
    );
    let config = config.to_str().unwrap();

    // `--config` before or after the command: it is global.
    for args in [
        ["--config", config, "inspect", "process-pause"],
        ["inspect", "--config", config, "process-pause"],
    ] {
        let out = faultline(Path::new(BIN), dir.path(), &args);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains("no signature from a trusted key"), "{text}");
        assert!(text.contains(&index.display().to_string()), "{text}");
    }
    // The hub commands read the same configuration, and nothing from the hub resolves.
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &["--config", config, "hub", "pull", "process-pause"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("no signature from a trusted key"),
        "{}",
        text(&out)
    );

    // Beside the bundled hub, the refused hub's packages stay out and the refusal is named.
    let lab_only = dir.path().join("lab-only");
    lab_hub(&lab_only, "lab-pause");
    let mixed = write_config(
        dir.path(),
        &format!(
            "[hub]\nsources = [\"bundled\", {:?}]\n",
            lab_only.display().to_string()
        ),
    );
    let mixed = mixed.to_str().unwrap();
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &["--config", mixed, "inspect", "lab-pause"],
    );
    let text_out = text(&out);
    assert_ne!(out.status.code(), Some(0), "{text_out}");
    assert!(
        text_out.contains("no signature from a trusted key"),
        "{text_out}"
    );
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &["--config", mixed, "inspect", "process-kill"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Stated in so many words for this source: accepted unsigned.
    let explicit = write_config(
        dir.path(),
        &format!(
            "[[hub.source]]\nurl = {:?}\nrequired_signatures = 0\n",
            lab.display().to_string()
        ),
    );
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &[
            "--config",
            explicit.to_str().unwrap(),
            "inspect",
            "process-pause",
        ],
    );
    let text_out = text(&out);
    assert_eq!(out.status.code(), Some(0), "{text_out}");
    assert!(text_out.contains("process-pause"), "{text_out}");
    // `hub verify` says such a source is loaded but not verified.
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &["--config", explicit.to_str().unwrap(), "hub", "verify"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("not verified"), "{}", text(&out));
}

#[test]
fn a_bad_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[hub]\nsource_list = []\n");
    let out = faultline(
        Path::new(BIN),
        dir.path(),
        &["--config", config.to_str().unwrap(), "hub", "list"],
    );
    let text = text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("source_list"), "{text}");
    assert!(text.contains(&config.display().to_string()), "{text}");
}

#[test]
fn hub_verify_without_trust_verifies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let index = lab_hub(&lab, "process-pause");
    let index_arg = index.to_str().unwrap();
    let unsigned = faultline(
        Path::new(BIN),
        dir.path(),
        &["hub", "verify", "--index", index_arg],
    );
    // Signed by some key, then altered: still nothing to check it against.
    let signer = Signer::new("lab-key");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(
        lab.join("hub-index.json.sig"),
        signatures(&bytes, &[&signer]),
    )
    .unwrap();
    std::fs::write(&index, [bytes.as_slice(), b" "].concat()).unwrap();
    let tampered = faultline(
        Path::new(BIN),
        dir.path(),
        &["hub", "verify", "--index", index_arg],
    );
    for out in [unsigned, tampered] {
        let text = text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains("nothing was verified"), "{text}");
        assert!(!text.contains(": ok"), "{text}");
    }
}

#[test]
fn hub_verify_with_a_trusted_key_accepts_only_a_good_signature() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let index = lab_hub(&lab, "process-pause");
    let index_arg = index.to_str().unwrap();
    let signer = Signer::new("lab-key");
    let config = write_config(dir.path(), &trusted_key_toml(&signer));
    let config = config.to_str().unwrap();
    let verify = || {
        faultline(
            Path::new(BIN),
            dir.path(),
            &["--config", config, "hub", "verify", "--index", index_arg],
        )
    };

    let out = verify();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("no signature from a trusted key"),
        "{}",
        text(&out)
    );

    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(
        lab.join("hub-index.json.sig"),
        signatures(&bytes, &[&signer]),
    )
    .unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(": ok"), "{}", text(&out));

    std::fs::write(&index, [bytes.as_slice(), b" "].concat()).unwrap();
    let out = verify();
    let text_out = text(&out);
    assert_eq!(out.status.code(), Some(3), "{text_out}");
    assert!(text_out.contains("does not verify"), "{text_out}");
    assert!(text_out.contains("lab-key"), "{text_out}");

    // Signed by a key the configuration does not know.
    std::fs::write(&index, &bytes).unwrap();
    std::fs::write(
        lab.join("hub-index.json.sig"),
        signatures(&bytes, &[&Signer::new("stranger")]),
    )
    .unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("not trusted"), "{}", text(&out));
}

#[test]
fn a_copied_binary_carries_its_bundled_hub() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("faultline");
    std::fs::copy(BIN, &bin).unwrap();
    // A directory that once would have become "the bundled hub": now ignored.
    let decoy = dir.path().join("decoy");
    std::fs::create_dir_all(&decoy).unwrap();
    std::fs::write(decoy.join("hub-index.json"), b"{}").unwrap();
    let run = |args: &[&str]| {
        Command::new(&bin)
            .current_dir(dir.path())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .env_remove("FAULTLINE_CONFIG")
            .env_remove("FAULTLINE_STATE_DIR")
            .env("FAULTLINE_HUB", &decoy)
            .env("HOME", dir.path().join("home"))
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .output()
            .unwrap()
    };

    let out = run(&["hub", "list"]);
    let listing = text(&out);
    assert_eq!(out.status.code(), Some(0), "{listing}");
    let bundled: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("hub-index.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = bundled["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 16, "{names:?}");
    for name in &names {
        assert!(
            listing.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing from:\n{listing}"
        );
    }

    let out = run(&["inspect", "process-pause"]);
    let text_out = text(&out);
    assert_eq!(out.status.code(), Some(0), "{text_out}");
    assert!(text_out.contains("process-pause"), "{text_out}");
    assert!(text_out.contains("verdict      ok"), "{text_out}");
    // Pulled into the state directory's content-addressed cache, nowhere else.
    let digest = bundled["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "process-pause")
        .unwrap()["versions"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert!(
        dir.path()
            .join("state/hub/blobs/sha256")
            .join(&digest)
            .is_file()
    );
    assert!(!dir.path().join("home").exists());
    assert!(!dir.path().join("xdg-cache").exists());

    let out = run(&["hub", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("built in"), "{}", text(&out));
}
