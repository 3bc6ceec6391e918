//! Builds every guest from source for wasm32-wasip2: the published faults and probes in
//! `faults/` (with the same reproducible flags as `faultline hub build`, so a test can compare
//! their digests with `hub-index.json`) and the misbehaving fixtures in `tests/components/`,
//! one of which (`multi-memory.wat`) is component text compiled here with the `wat` crate.
//! Writes `$OUT_DIR/components.rs` with a path constant per component.

// Test support: a panic is how a test (or its build) fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The published faults, then the published probes, then the fixtures. `faultline hub build`
/// builds each package in a cargo invocation of its own, so its bytes do not depend on what
/// else is built; faults (all SDK feature `fault`, the same dependency features) give those
/// same bytes built together, and so do probes. Built with both, the SDK's features (which are
/// additive) would unify and the bytes would differ from the published ones.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "faults",
        &[
            "process-pause",
            "process-kill",
            "process-slow",
            "network-delay",
            "network-loss",
            "network-bandwidth",
            "network-blackhole",
            "network-dns",
            "network-tcp-reset",
            "network-corruption",
            "network-duplication",
            "cgroup-cpu",
            "cgroup-memory",
            "cgroup-pids",
            "cgroup-freeze",
            "stress-cpu",
            "stress-memory",
            "disk-fill",
            "io-stress",
        ],
    ),
    (
        "faults",
        &[
            "probe-process",
            "http-probe",
            "tcp-probe",
            "command-probe",
            "prometheus-probe",
        ],
    ),
    (
        "tests/components",
        &[
            "fixture-misbehave",
            "fixture-no-revert",
            "fixture-outside-contract",
            "fixture-ticking",
            "fixture-bad-tick",
            "fixture-old-outbound",
            "fixture-misbehave-probe",
        ],
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.parent().expect("repo root").to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target = out.join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    for dir in [
        "faults/sdk/src",
        "faults/sdk/wit",
        "faults/sdk/Cargo.toml",
        "faults/Cargo.toml",
        "faults/Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let mut consts = String::new();
    for (workspace, packages) in GROUPS {
        let ws = root.join(workspace);
        println!("cargo:rerun-if-changed={}", ws.join("Cargo.toml").display());
        println!("cargo:rerun-if-changed={}", ws.join("Cargo.lock").display());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&ws)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
            ])
            .arg("--target-dir")
            .arg(&target);
        for p in *packages {
            cmd.args(["-p", p]);
            let dir = ws.join(p.strip_prefix("fixture-").unwrap_or(p));
            println!("cargo:rerun-if-changed={}", dir.join("src").display());
            println!(
                "cargo:rerun-if-changed={}",
                dir.join("Cargo.toml").display()
            );
        }
        reproducible(&mut cmd, &root);
        let status = cmd
            .status()
            .expect("failed to run cargo for the wasm guests");
        assert!(
            status.success(),
            "building guests in {} failed",
            ws.display()
        );
        for p in *packages {
            let wasm = target
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", p.replace('-', "_")));
            let name = p.strip_prefix("fixture-").unwrap_or(p);
            consts.push_str(&format!(
                "/// `{p}` built from source.\npub const {}: &str = {:?};\n",
                name.replace('-', "_").to_uppercase(),
                wasm.display().to_string()
            ));
        }
    }
    let published: Vec<String> = GROUPS
        .iter()
        .filter(|(ws, _)| *ws == "faults")
        .flat_map(|(_, packages)| packages.iter())
        .map(|p| format!("({p:?}, {}),", p.replace('-', "_").to_uppercase()))
        .collect();
    consts.push_str(&format!(
        "/// Every published fault and probe: (package, path built from source).\npub const PUBLISHED: &[(&str, &str)] = &[{}];\n",
        published.join(" ")
    ));
    // Each published package's version from its Cargo.toml, so tests name what they load.
    let versions: Vec<String> = GROUPS
        .iter()
        .filter(|(ws, _)| *ws == "faults")
        .flat_map(|(_, packages)| packages.iter())
        .map(|p| {
            let manifest = root.join("faults").join(p).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).expect("read a fault's Cargo.toml");
            let version = text
                .lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{}: no version line", manifest.display()));
            format!("({p:?}, {version:?}),")
        })
        .collect();
    consts.push_str(&format!(
        "/// Every published fault and probe: (package, version in its Cargo.toml).\npub const VERSIONS: &[(&str, &str)] = &[{}];\n",
        versions.join(" ")
    ));
    consts.push_str(&multi_memory(&root, &out));
    std::fs::write(out.join("components.rs"), consts).expect("write components.rs");
}

/// Compiles the two-memory fixture `tests/components/multi-memory.wat` to a binary component
/// in `out`, with `describe`'s answer laid out as data. Returns its path constant.
fn multi_memory(root: &Path, out: &Path) -> String {
    let source = root.join("tests/components/multi-memory.wat");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).expect("read multi-memory.wat");
    let description = description_data(
        1024,
        &[
            "multi-memory",
            "0.1.0",
            "Grows two core memories that together pass the store's memory cap",
            r#"{"type": "object"}"#,
        ],
        true,
    );
    let wasm = wat::parse_str(text.replace("@DESCRIPTION@", &description))
        .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let path = out.join("multi_memory.wasm");
    std::fs::write(&path, wasm).expect("write multi_memory.wasm");
    format!(
        "/// `tests/components/multi-memory.wat` compiled to a binary component.\npub const MULTI_MEMORY: &str = {:?};\n",
        path.display().to_string()
    )
}

/// Data segments holding a `description` record at `at` as the canonical ABI lays it out:
/// name, version, summary and params-schema as (ptr, len) pairs of u32, an empty capability
/// list as (ptr, len), `revertible` as a byte; the strings follow the 44-byte record.
fn description_data(at: u32, strings: &[&str; 4], revertible: bool) -> String {
    let mut record = Vec::new();
    let mut text = Vec::new();
    let text_at = at + 64;
    for s in strings {
        let ptr = text_at + text.len() as u32;
        record.extend(ptr.to_le_bytes());
        record.extend((s.len() as u32).to_le_bytes());
        text.extend(s.as_bytes());
    }
    record.extend(text_at.to_le_bytes());
    record.extend(0u32.to_le_bytes());
    record.push(u8::from(revertible));
    let escape = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>()
    };
    format!(
        "(data (i32.const {at}) \"{}\")\n    (data (i32.const {text_at}) \"{}\")",
        escape(&record),
        escape(&text)
    )
}

/// The environment `faultline hub build` uses: no flags from the outer build, paths remapped so
/// the artefact does not depend on where the repository or the cargo home are.
fn reproducible(cmd: &mut Command, root: &Path) {
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    // `faultline hub build faults`'s flags, in its order (runtime/src/hub/build.rs,
    // `reproducible_rustflags`): the workspace as /src (the SDK is inside it, so there is no
    // local dependency to remap), the cargo home as /cargo.
    let root = root.canonicalize().expect("canonical repository root");
    let flags = [
        "-Cdebuginfo=0".to_string(),
        format!("--remap-path-prefix={}=/src", root.join("faults").display()),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
    ];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"));
}
