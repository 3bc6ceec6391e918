//! `faultline hub build`: builds the faults and probes of `faults/` reproducibly, copies the
//! components to `hub/components/<name>-<version>.wasm` and updates the index entries.
//!
//! A crate is published when its `Cargo.toml` has a `[package.metadata.faultline]` table:
//!
//! ```toml
//! [package.metadata.faultline]
//! kind = "fault"                       # or "probe"
//! capabilities = ["log", "rollback", { interface = "process", scope = { signals = ["SIGSTOP", "SIGCONT"] } }]
//! categories = ["process"]
//! revertible = true
//! # contract = "faultline:contract@0.1.0"   # default: the package line of sdk/wit/faultline.wit
//! ```
//!
//! The description, maintainers (authors) and source (repository) come from `[package]`; the
//! parameter schema from `params.schema.json` beside `Cargo.toml` (default `{"type": "object"}`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::write_atomic;
use super::{
    CapabilityDecl, Digest, HubError, HubInfo, INDEX_FILE, Index, Kind, Package, Release,
    SCHEMA_VERSION,
};

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The repository root, holding `faults/`, `hub/components/` and the index.
    pub repo: PathBuf,
    /// Only these packages; empty for all published ones.
    pub packages: Vec<String>,
    /// How long the rewritten index stays valid.
    pub validity: Duration,
    /// Replace a published version whose bytes changed (normally a version is immutable).
    pub force: bool,
}

/// One component built and recorded in the index.
#[derive(Debug, Clone)]
pub struct Built {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Digest of the component.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Where the component was copied.
    pub path: PathBuf,
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The components.
    pub built: Vec<Built>,
    /// Whether the index changed (and its serial was bumped and old signatures removed).
    pub index_changed: bool,
    /// The index's serial now.
    pub serial: u64,
}

/// The `[package.metadata.faultline]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct FaultlineMetadata {
    /// Fault or probe.
    pub kind: Kind,
    /// Declared capabilities: names, or tables with scope hints.
    #[serde(default)]
    pub capabilities: Vec<CapabilitySpec>,
    /// Categories for search.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Whether revert truly undoes inject.
    #[serde(default)]
    pub revertible: bool,
    /// The contract, when not the SDK's.
    #[serde(default)]
    pub contract: Option<String>,
}

/// A capability in crate metadata: `"process"` or `{ interface = "process", scope = {…} }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CapabilitySpec {
    /// Just the interface.
    Name(super::Capability),
    /// With scope hints.
    Decl(CapabilityDecl),
}

/// A built component with everything the index needs about it.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// `[package] description`.
    pub description: String,
    /// `[package] authors`.
    pub maintainers: Vec<String>,
    /// `[package] repository`.
    pub source: Option<String>,
    /// The faultline metadata.
    pub metadata: FaultlineMetadata,
    /// The contract in effect.
    pub contract: String,
    /// The parameter schema.
    pub params_schema: Map<String, Value>,
    /// Digest of the component.
    pub digest: Digest,
    /// Size of the component.
    pub size: u64,
    /// URL relative to the index.
    pub url: String,
}

#[derive(Deserialize)]
struct CargoMetadata {
    packages: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: semver::Version,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    repository: Option<String>,
    manifest_path: PathBuf,
    #[serde(default)]
    metadata: Option<Value>,
    targets: Vec<CargoTarget>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}

/// Builds the published crates of `<repo>/faults` for `wasm32-wasip2` with reproducible
/// settings (`--locked`, no debug info, the repository and `$CARGO_HOME` remapped), copies
/// the components into `<repo>/hub/components/`, and updates `<repo>/hub-index.json`. When
/// the index changes, its serial is bumped, its times renewed, and the now-invalid signature
/// file removed: sign it again. Cargo's output is captured and returned in errors.
pub fn build(options: &BuildOptions) -> Result<BuildReport, HubError> {
    // Absolute: cargo runs inside `faults/`, and the remapped prefix must be the real path.
    let repo = options
        .repo
        .canonicalize()
        .map_err(|e| HubError::io(format!("resolving {}", options.repo.display()), e))?;
    let options = &BuildOptions {
        repo,
        ..options.clone()
    };
    let faults = options.repo.join("faults");
    let manifest = faults.join("Cargo.toml");
    let target_dir = faults.join("target");
    let metadata_out = cargo(&faults)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| HubError::io("running cargo metadata", e))?;
    check_status("cargo metadata", &metadata_out)?;
    let metadata: CargoMetadata = serde_json::from_slice(&metadata_out.stdout)
        .map_err(|e| HubError::Config(format!("reading cargo metadata: {e}")))?;

    let mut selected = Vec::new();
    for package in metadata.packages {
        let Some(meta) = package.metadata.as_ref().and_then(|m| m.get("faultline")) else {
            continue;
        };
        if !options.packages.is_empty() && !options.packages.contains(&package.name) {
            continue;
        }
        let meta: FaultlineMetadata = serde_json::from_value(meta.clone()).map_err(|e| {
            HubError::Config(format!(
                "{}: [package.metadata.faultline]: {e}",
                package.name
            ))
        })?;
        selected.push((package, meta));
    }
    for wanted in &options.packages {
        if !selected.iter().any(|(p, _)| &p.name == wanted) {
            return Err(HubError::Config(format!(
                "package `{wanted}` is not a published crate of {} (needs [package.metadata.faultline])",
                faults.display()
            )));
        }
    }
    if selected.is_empty() {
        return Err(HubError::Config(format!(
            "no crate in {} has [package.metadata.faultline]",
            faults.display()
        )));
    }

    // One cargo invocation per package: faults and probes enable different SDK features,
    // and cargo unifies the features of everything built together.
    for (package, _) in &selected {
        let out = cargo(&faults)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .args(["-p", &package.name])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                reproducible_rustflags(&options.repo),
            )
            .env_remove("RUSTFLAGS")
            .output()
            .map_err(|e| HubError::io(format!("running cargo build -p {}", package.name), e))?;
        check_status(&format!("cargo build -p {}", package.name), &out)?;
    }

    let default_contract = sdk_contract(&options.repo);
    let components = options.repo.join("hub/components");
    std::fs::create_dir_all(&components)
        .map_err(|e| HubError::io(format!("creating {}", components.display()), e))?;
    let mut artifacts = Vec::new();
    let mut built = Vec::new();
    for (package, meta) in selected {
        let target = package
            .targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "cdylib"))
            .ok_or_else(|| {
                HubError::Config(format!(
                    "{}: no cdylib target to build a component from",
                    package.name
                ))
            })?;
        let wasm = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", target.name.replace('-', "_")));
        let bytes = std::fs::read(&wasm)
            .map_err(|e| HubError::io(format!("reading {}", wasm.display()), e))?;
        let file = format!("{}-{}.wasm", package.name, package.version);
        let dest = components.join(&file);
        write_atomic(&dest, &bytes)?;
        let contract = match meta.contract.clone().or_else(|| default_contract.clone()) {
            Some(c) => c,
            None => {
                return Err(HubError::Config(format!(
                    "{}: no contract in metadata and none found in sdk/wit/faultline.wit",
                    package.name
                )));
            }
        };
        let crate_dir = package.manifest_path.parent().unwrap_or(Path::new("."));
        let params_schema = read_params_schema(&crate_dir.join("params.schema.json"))?;
        let digest = Digest::of(&bytes);
        built.push(Built {
            name: package.name.clone(),
            version: package.version.clone(),
            digest,
            size: bytes.len() as u64,
            path: dest,
        });
        artifacts.push(Artifact {
            description: package
                .description
                .clone()
                .unwrap_or_else(|| package.name.clone()),
            maintainers: package.authors.clone(),
            source: package.repository.clone(),
            name: package.name,
            version: package.version,
            metadata: meta,
            contract,
            params_schema,
            digest,
            size: bytes.len() as u64,
            url: format!("hub/components/{file}"),
        });
    }

    let index_path = options.repo.join(INDEX_FILE);
    let existing = match std::fs::read(&index_path) {
        Ok(bytes) => Some(Index::parse(&bytes, &index_path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HubError::io(format!("reading {}", index_path.display()), e)),
    };
    let (index, changed) = apply(
        existing,
        &artifacts,
        SystemTime::now(),
        options.validity,
        options.force,
    )?;
    if changed {
        write_atomic(&index_path, &index.to_json_pretty()?)?;
        let sig = super::signature_path(&index_path);
        if sig.exists() {
            std::fs::remove_file(&sig)
                .map_err(|e| HubError::io(format!("removing stale {}", sig.display()), e))?;
        }
    }
    Ok(BuildReport {
        built,
        index_changed: changed,
        serial: index.serial,
    })
}

/// Records `artifacts` in `index` (a new bundled index when `None`). A version already
/// published with other bytes is refused unless `force`. When anything changed, the serial is
/// bumped and `generated`/`expires` renewed from `now`. Returns the index and whether it changed.
pub fn apply(
    index: Option<Index>,
    artifacts: &[Artifact],
    now: SystemTime,
    validity: Duration,
    force: bool,
) -> Result<(Index, bool), HubError> {
    let runtime = semver::Version::parse(env!("CARGO_PKG_VERSION"))
        .map(|v| format!("^{}.{}", v.major, v.minor))
        .unwrap_or_else(|_| "*".into());
    let mut index = index.unwrap_or_else(|| Index {
        schema_version: SCHEMA_VERSION,
        hub: HubInfo {
            id: "faultline".into(),
            name: "Faultline bundled hub".into(),
            extra: Default::default(),
        },
        serial: 0,
        generated: String::new(),
        expires: String::new(),
        runtime,
        packages: Vec::new(),
        extra: Default::default(),
    });
    let before = index.clone();
    for artifact in artifacts {
        let release = Release {
            version: artifact.version.clone(),
            digest: artifact.digest,
            size: artifact.size,
            urls: vec![artifact.url.clone()],
            contract: artifact.contract.clone(),
            capabilities: artifact
                .metadata
                .capabilities
                .iter()
                .map(|c| match c {
                    CapabilitySpec::Name(interface) => CapabilityDecl {
                        interface: *interface,
                        scope: None,
                    },
                    CapabilitySpec::Decl(decl) => decl.clone(),
                })
                .collect(),
            params_schema: artifact.params_schema.clone(),
            revertible: artifact.metadata.revertible,
            yanked: None,
            deprecated: None,
            extra: Default::default(),
        };
        let pos = index.packages.iter().position(|p| p.name == artifact.name);
        let package = match pos {
            Some(i) => &mut index.packages[i],
            None => {
                index.packages.push(Package {
                    name: artifact.name.clone(),
                    kind: artifact.metadata.kind,
                    description: String::new(),
                    categories: Vec::new(),
                    maintainers: Vec::new(),
                    source: None,
                    versions: Vec::new(),
                    extra: Default::default(),
                });
                let last = index.packages.len() - 1;
                &mut index.packages[last]
            }
        };
        package.kind = artifact.metadata.kind;
        package.description = artifact.description.clone();
        package.categories = artifact.metadata.categories.clone();
        package.maintainers = artifact.maintainers.clone();
        package.source = artifact.source.clone();
        match package
            .versions
            .iter_mut()
            .find(|r| r.version == artifact.version)
        {
            Some(existing) => {
                if existing.digest != release.digest && !force {
                    return Err(HubError::Config(format!(
                        "{}@{} is already published with digest {}, the new build is {}; \
                         bump the version (or pass --force to replace it)",
                        artifact.name, artifact.version, existing.digest, release.digest
                    )));
                }
                // Keep curation decisions (yanked, deprecated) and extensions made in the index.
                let (yanked, deprecated, extra) = (
                    existing.yanked.take(),
                    existing.deprecated.take(),
                    std::mem::take(&mut existing.extra),
                );
                *existing = Release {
                    yanked,
                    deprecated,
                    extra,
                    ..release
                };
            }
            None => package.versions.push(release),
        }
        package.versions.sort_by(|a, b| b.version.cmp(&a.version));
    }
    index.packages.sort_by(|a, b| a.name.cmp(&b.name));
    let changed = index != before;
    if changed {
        index.serial += 1;
        index.generated = humantime::format_rfc3339_seconds(now).to_string();
        index.expires = humantime::format_rfc3339_seconds(now + validity).to_string();
    }
    Ok((index, changed))
}

/// `-C debuginfo=0` and path remapping, so two builds of one source on two machines match.
fn reproducible_rustflags(repo: &Path) -> String {
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut flags = vec![
        "-Cdebuginfo=0".to_string(),
        format!("--remap-path-prefix={}=/faultline", repo.display()),
    ];
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join("\u{1f}")
}

fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(dir);
    command
}

fn check_status(what: &str, out: &std::process::Output) -> Result<(), HubError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(HubError::Config(format!(
        "{what} failed ({}):\n{}",
        out.status,
        tail.join("\n")
    )))
}

/// The contract from the SDK's WIT package line, e.g. `faultline:contract@0.1.0`.
fn sdk_contract(repo: &Path) -> Option<String> {
    let text = std::fs::read_to_string(repo.join("sdk/wit/faultline.wit")).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
}

fn read_params_schema(path: &Path) -> Result<Map<String, Value>, HubError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| HubError::Config(format!("{} is not a JSON object: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut schema = Map::new();
            schema.insert("type".into(), "object".into());
            Ok(schema)
        }
        Err(e) => Err(HubError::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::hub::Capability;

    fn artifact(version: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            name: "process-pause".into(),
            version: version.parse().unwrap(),
            description: "Pauses processes".into(),
            maintainers: vec!["Faultline".into()],
            source: None,
            metadata: FaultlineMetadata {
                kind: Kind::Fault,
                capabilities: vec![CapabilitySpec::Name(Capability::Process)],
                categories: vec!["process".into()],
                revertible: true,
                contract: None,
            },
            contract: "faultline:contract@0.1.0".into(),
            params_schema: Map::new(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            url: format!("hub/components/process-pause-{version}.wasm"),
        }
    }

    #[test]
    fn apply_adds_orders_bumps_and_refuses_republish() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let day = Duration::from_secs(86_400);
        let (index, changed) = apply(None, &[artifact("0.1.0", b"a")], now, day, false).unwrap();
        assert!(changed);
        assert_eq!(index.serial, 1);
        let (index, changed) =
            apply(Some(index), &[artifact("0.2.0", b"b")], now, day, false).unwrap();
        assert!(changed);
        assert_eq!(index.serial, 2);
        let versions: Vec<_> = index.packages[0]
            .versions
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        assert_eq!(versions, ["0.2.0", "0.1.0"]);
        let (same, changed) = apply(
            Some(index.clone()),
            &[artifact("0.2.0", b"b")],
            now,
            day,
            false,
        )
        .unwrap();
        assert!(!changed);
        assert_eq!(same.serial, 2);
        assert!(
            apply(
                Some(index.clone()),
                &[artifact("0.2.0", b"c")],
                now,
                day,
                false
            )
            .is_err()
        );
        assert!(apply(Some(index), &[artifact("0.2.0", b"c")], now, day, true).is_ok());
        // The result is a valid index.
        let bytes = same.to_json_pretty().unwrap();
        Index::parse(&bytes, "t").unwrap();
    }
}
