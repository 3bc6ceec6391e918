//! A fault author's whole path, through the CLI only, outside the repository: `faultline new`,
//! one `cargo build`, the mock-host tests, a new signed hub (`hub init`, `hub build`,
//! `hub keygen`, `hub sign`), and a run by hub reference under a policy that pauses a real
//! process. Then what a curator must be told: a build that cannot be recorded stops before it
//! compiles, and a component importing more than it declares is refused by `inspect` and
//! `hub build` alike.

use faultline_tests::wait_state;
use faultline_tests::{Sleeper, repo_root};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One cargo target directory for every crate these tests make: their dependencies are
/// compiled once (cargo's lock serialises the tests that share it).
fn shared_target() -> std::path::PathBuf {
    repo_root().join("target/authoring")
}

/// Runs `faultline` in `dir` with its own state directory and [`shared_target`] as cargo's
/// target directory (for `hub build`); asserts the exit code.
fn faultline(dir: &Path, args: &[&str], code: i32) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "faultline {args:?}:\n{t}");
    t
}

/// Cargo as an author runs it: nothing from the test's own build leaks in; one target
/// directory for every step (so `hub build` honouring `CARGO_TARGET_DIR` is what is tested).
fn cargo(dir: &Path, target: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{t}",
        dir.display()
    );
    t
}

#[test]
fn a_new_fault_goes_from_an_empty_directory_to_a_signed_hub_run() {
    // Outside the repository: nothing of its workspace may help the new crate build.
    let work = tempfile::Builder::new()
        .prefix("author-")
        .tempdir()
        .unwrap();
    let work = work.path();
    assert!(!work.starts_with(repo_root()));
    let target = shared_target();

    let made = faultline(work, &["new", "fault", "e2e-nap"], 0);
    assert!(made.contains("made fault `e2e-nap`"), "{made}");
    let crate_dir = work.join("e2e-nap");

    // One plain `cargo build` makes a component; the mock-host tests pass natively.
    cargo(&crate_dir, &target, &["build"]);
    let debug = target.join("wasm32-wasip2/debug/e2e_nap.wasm");
    assert!(debug.is_file(), "{} missing", debug.display());
    let tests = cargo(&crate_dir, &target, &["host-test"]);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    let inspected = faultline(work, &["inspect", &debug.display().to_string()], 0);
    assert!(inspected.contains("verdict      ok"), "{inspected}");
    assert!(
        inspected.contains("capabilities log, rollback, process"),
        "{inspected}"
    );

    // A new hub of its own, built and signed.
    let hub = work.join("hub");
    let index = hub.join("hub-index.json");
    let index_arg = index.display().to_string();
    let crate_arg = crate_dir.display().to_string();
    let e = faultline(
        work,
        &[
            "hub",
            "init",
            "--id",
            "faultline",
            "--name",
            "Mine",
            "--index",
            &index_arg,
        ],
        2,
    );
    assert!(e.contains("bundled hub's id"), "{e}");
    faultline(
        work,
        &[
            "hub", "init", "--id", "e2e-hub", "--name", "E2E hub", "--index", &index_arg,
        ],
        0,
    );
    let built = faultline(
        work,
        &["hub", "build", &crate_arg, "--index", &index_arg],
        0,
    );
    assert!(built.contains("e2e-nap@0.1.0 sha256:"), "{built}");
    assert!(built.contains("serial 2"), "{built}");
    // The template's SDK is a path outside the new crate: its bytes depend on that path, and
    // the curator is told so (the bundled hub keeps its SDK inside `faults/` for this reason).
    assert!(
        built.contains("note: faultline-sdk is a path dependency outside the workspace"),
        "{built}"
    );
    assert!(
        target.join("wasm32-wasip2/release/e2e_nap.wasm").is_file(),
        "hub build must build in CARGO_TARGET_DIR"
    );
    // Published files are readable by the web server or mirror that serves them.
    use std::os::unix::fs::PermissionsExt;
    for published in [hub.join("hub/components/e2e-nap-0.1.0.wasm"), index.clone()] {
        let mode = std::fs::metadata(&published).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{}", published.display());
    }
    // Reproducible: the same sources give the same bytes, so the index stays as it is.
    let again = faultline(
        work,
        &["hub", "build", &crate_arg, "--index", &index_arg],
        0,
    );
    assert!(again.contains("index unchanged (serial 2)"), "{again}");

    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(index_json["hub"]["id"], "e2e-hub");
    let release = &index_json["packages"][0]["versions"][0];
    assert_eq!(
        release["params_schema"]["properties"]["max_targets"]["type"], "integer",
        "the schema is describe()'s, not a placeholder: {release}"
    );
    let caps: Vec<&str> = release["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["interface"].as_str().unwrap())
        .collect();
    assert_eq!(caps, ["log", "rollback", "process"]);

    let keys = work.join("keys/e2e");
    let keygen = faultline(
        work,
        &["hub", "keygen", "--out", &keys.display().to_string()],
        0,
    );
    let key_line = keygen.lines().find(|l| l.starts_with("key = ")).unwrap();
    faultline(
        work,
        &[
            "hub",
            "sign",
            "--key",
            &keys.display().to_string(),
            "--index",
            &index_arg,
        ],
        0,
    );
    let config = work.join("faultline.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nsources = [\"bundled\", {:?}]\n\n[[hub.trusted_keys]]\nid = \"e2e\"\n{key_line}\n",
            hub.display().to_string()
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let listed = faultline(
        work,
        &["--config", &config_arg, "hub", "show", "e2e-nap"],
        0,
    );
    assert!(listed.contains("e2e-hub"), "{listed}");

    // Run by hub reference with a policy: a real process is paused, then resumed.
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let policy = work.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"e2e-nap\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{pid}], signals = [\"stop\"] }}\n"
        ),
    )
    .unwrap();
    let policy_arg = policy.display().to_string();
    let verdict = faultline(
        work,
        &[
            "--config",
            &config_arg,
            "inspect",
            "e2e-nap",
            "--policy",
            &policy_arg,
        ],
        0,
    );
    assert!(
        verdict.contains("policy       loads it as e2e-nap@0.1.0"),
        "{verdict}"
    );
    assert!(
        verdict.contains("process: granted by grant 1 (e2e-nap)"),
        "{verdict}"
    );
    let empty = work.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let refused = faultline(
        work,
        &[
            "--config",
            &config_arg,
            "inspect",
            "e2e-nap",
            "--policy",
            &empty.display().to_string(),
        ],
        3,
    );
    assert!(refused.contains("policy       refused:"), "{refused}");
    assert!(refused.contains("faultline:contract/process"), "{refused}");

    let run = Command::new(BIN)
        .current_dir(work)
        .arg("--state-dir")
        .arg(work.join("state"))
        .args([
            "--config",
            &config_arg,
            "inject",
            "e2e-nap",
            "--policy",
            &policy_arg,
        ])
        .args(["-p", &format!("pid={pid}"), "-d", "2s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_state(pid, 'T', Duration::from_secs(20)),
        "the hub's fault never paused {pid}"
    );
    let out = run.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("from hub e2e-hub"), "{t}");
    assert!(t.contains("host clean"), "{t}");
    assert!(
        wait_state(pid, 'S', Duration::from_secs(5)),
        "{pid} left paused"
    );

    // A component importing a capability it does not declare: `inspect` refuses it (exit 3)
    // and `hub build` will not publish it.
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let undeclared = source.replace(
        "&[Capability::Log, Capability::Rollback, Capability::Process]",
        "&[Capability::Log, Capability::Rollback]",
    );
    assert_ne!(source, undeclared);
    let bumped = std::fs::read_to_string(crate_dir.join("Cargo.toml"))
        .unwrap()
        .replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1);
    std::fs::write(crate_dir.join("Cargo.toml"), bumped).unwrap();
    std::fs::write(&lib, undeclared).unwrap();
    cargo(&crate_dir, &target, &["build"]);
    let refused = faultline(work, &["inspect", &debug.display().to_string()], 3);
    assert!(refused.contains("refused"), "{refused}");
    assert!(refused.contains("faultline:contract/process"), "{refused}");
    let before = std::fs::read(&index).unwrap();
    let e = faultline(
        work,
        &["hub", "build", &crate_arg, "--index", &index_arg],
        3,
    );
    assert!(e.contains("the built component is refused"), "{e}");
    assert!(e.contains("e2e-nap"), "{e}");
    assert!(e.contains("faultline:contract/process"), "{e}");
    assert_eq!(std::fs::read(&index).unwrap(), before, "nothing written");
}

#[test]
fn hub_build_refuses_what_it_can_before_compiling() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let index = work.join("hub-index.json");
    let index_arg = index.display().to_string();
    let faults = repo_root().join("faults").display().to_string();

    // No index: the message says how to start one, and nothing was built.
    let start = Instant::now();
    let e = faultline(work, &["hub", "build", &faults, "--index", &index_arg], 2);
    assert!(e.contains("faultline hub init"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "it compiled first"
    );

    faultline(
        work,
        &[
            "hub", "init", "--id", "acme", "--name", "Acme", "--index", &index_arg,
        ],
        0,
    );
    // Not a crate directory.
    let e = faultline(
        work,
        &["hub", "build", "/nonexistent-crates", "--index", &index_arg],
        2,
    );
    assert!(e.contains("not a directory of fault crates"), "{e}");
    // A member that is not in the workspace.
    let e = faultline(
        work,
        &[
            "hub", "build", &faults, "-p", "no-such", "--index", &index_arg,
        ],
        2,
    );
    assert!(e.contains("`no-such` is not a member"), "{e}");
    assert!(e.contains("process-pause"), "{e}");

    // A crate whose SDK dependency enables neither world.
    let bare = work.join("bare");
    std::fs::create_dir_all(bare.join("src")).unwrap();
    std::fs::write(bare.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        bare.join("Cargo.toml"),
        format!(
            "[package]\nname = \"bare\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nfaultline-sdk = {{ path = {:?} }}\n\n[workspace]\n",
            repo_root().join("faults/sdk").display().to_string()
        ),
    )
    .unwrap();
    let e = faultline(
        work,
        &[
            "hub",
            "build",
            &bare.display().to_string(),
            "--index",
            &index_arg,
        ],
        2,
    );
    assert!(
        e.contains("enables neither the `fault` nor the `probe`"),
        "{e}"
    );
    let fingerprints = shared_target().join("wasm32-wasip2/release/.fingerprint");
    let compiled = std::fs::read_dir(&fingerprints)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("bare-"));
    assert!(!compiled, "it compiled first");
    // The index is as init wrote it.
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!(index_json["serial"], 1);
}

/// Every other template (the `process` fault is the test above): it builds for wasm32 with one
/// `cargo build`, passes its mock-host tests natively, and is a component the host accepts,
/// importing the capability the template is for.
#[test]
fn every_template_builds_and_passes_its_tests() {
    let work = tempfile::Builder::new()
        .prefix("templates-")
        .tempdir()
        .unwrap();
    let work = work.path();
    let target = shared_target();
    for (kind, capability, name, tests) in [
        ("fault", "network", "tpl-lag", 2),
        ("fault", "cgroup", "tpl-cap", 2),
        ("probe", "outbound", "tpl-up", 2),
        ("probe", "process", "tpl-ps", 1),
    ] {
        faultline(work, &["new", kind, name, "--capability", capability], 0);
        let dir = work.join(name);
        cargo(&dir, &target, &["build"]);
        let ran = cargo(&dir, &target, &["host-test"]);
        assert!(
            ran.contains(&format!("test result: ok. {tests} passed")),
            "{name}: {ran}"
        );
        let wasm = target.join(format!(
            "wasm32-wasip2/debug/{}.wasm",
            name.replace('-', "_")
        ));
        let inspected = faultline(work, &["inspect", &wasm.display().to_string()], 0);
        assert!(
            inspected.contains(&format!("kind         {kind}")),
            "{inspected}"
        );
        let caps = inspected
            .lines()
            .find(|l| l.starts_with("capabilities"))
            .unwrap_or_default();
        assert!(caps.contains(capability), "{name}: {inspected}");
    }
}
