//! `faultline hub build`: builds a directory of fault and probe crates (a cargo workspace or
//! one package) reproducibly, copies the components to `hub/components/<name>-<version>.wasm`
//! beside the index, and updates the index entries. Everything that can be checked before
//! compiling is: the index (it must exist: `faultline hub init` starts one), the lock file,
//! the `wasm32-wasip2` target, each crate's cdylib target, SDK dependency and feature,
//! metadata and name, and the contract version of the SDK it builds against.
//!
//! The index carries what the **built component** says of itself: each one is loaded into a
//! real host with nothing granted and asked to `describe()` itself. Its name, version, summary
//! (the index's `description`), kind (the world it exports), capabilities, parameter schema and
//! `revertible` go into the index as they are; its actual imports must stay within the
//! capabilities it describes (the check agents apply on every pull). Crate metadata keeps only
//! what the component cannot say:
//!
//! ```toml
//! [package.metadata.faultline]
//! categories = ["process"]
//! # Informative scope hints, per capability describe() declares.
//! scopes = { process = { signals = ["SIGSTOP", "SIGCONT"] } }
//! ```
//!
//! Maintainers (authors) and source (repository) come from `[package]`. `kind`, `capabilities`
//! (names), `revertible` and `contract` may still be written in the metadata, as assertions:
//! when one disagrees with `describe()` (or `[package]` name or version does), the build is
//! refused with a message naming the crate, the field and both values. A `params.schema.json`
//! beside a crate is an error: the schema is the one `describe()` publishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::write_atomic;
use super::{
    Capability, CapabilityDecl, ComponentImports, Digest, HubError, Index, Kind, Package, Release,
    check_imports,
};

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The crates: a directory holding a `Cargo.toml` (a workspace or one package), or that
    /// manifest itself.
    pub crates: PathBuf,
    /// The index to update (it must exist); components go to `hub/components/` beside it.
    pub index: PathBuf,
    /// Only these packages; empty for every one that depends on `faultline-sdk`.
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
    /// What the curator should know: each path dependency outside the workspace, whose
    /// absolute path cargo hashes into every symbol of it, so the components' bytes are
    /// reproducible only from that same directory.
    pub notes: Vec<String>,
}

/// What a component says of itself: its `describe()` answer, the world it exports and the
/// contract the host checked it against. [`ComponentImports::describe`] produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// `describe()`'s name.
    pub name: String,
    /// `describe()`'s version (text, as the component said it).
    pub version: String,
    /// `describe()`'s one-line summary.
    pub summary: String,
    /// Fault or probe: the world the component exports.
    pub kind: Kind,
    /// `describe()`'s parameter schema, parsed: always a JSON object.
    pub params_schema: Map<String, Value>,
    /// `describe()`'s capabilities, in its order.
    pub capabilities: Vec<Capability>,
    /// `describe()`'s `revertible`.
    pub revertible: bool,
    /// The contract the component was checked against, e.g. `faultline:contract@0.1.0`.
    pub contract: String,
}

/// The `[package.metadata.faultline]` table: what a component cannot say of itself, and
/// optional assertions on what it does say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultlineMetadata {
    /// Categories for search.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Informative scope hints per capability interface; each must be one `describe()`
    /// declares.
    #[serde(default)]
    pub scopes: BTreeMap<Capability, Map<String, Value>>,
    /// Asserted kind; must equal the component's.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Asserted capability names; must equal `describe()`'s (as a set).
    #[serde(default)]
    pub capabilities: Option<Vec<Capability>>,
    /// Asserted `revertible`; must equal `describe()`'s.
    #[serde(default)]
    pub revertible: Option<bool>,
    /// Asserted contract; must equal the one the component was checked against.
    #[serde(default)]
    pub contract: Option<String>,
}

/// A built component with everything the index needs about it.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Fault or probe.
    pub kind: Kind,
    /// `describe()`'s summary.
    pub description: String,
    /// Metadata categories.
    pub categories: Vec<String>,
    /// `[package] authors`.
    pub maintainers: Vec<String>,
    /// `[package] repository`.
    pub source: Option<String>,
    /// The contract the component was checked against.
    pub contract: String,
    /// `describe()`'s capabilities with the metadata's scope hints.
    pub capabilities: Vec<CapabilityDecl>,
    /// `describe()`'s parameter schema.
    pub params_schema: Map<String, Value>,
    /// `describe()`'s `revertible`.
    pub revertible: bool,
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
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct CargoPackage {
    id: String,
    name: String,
    version: semver::Version,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    repository: Option<String>,
    manifest_path: PathBuf,
    #[serde(default)]
    metadata: Option<Value>,
    targets: Vec<CargoTarget>,
    /// `None` for a package on the local file system (a path dependency or a member).
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<CargoDependency>,
}

#[derive(Deserialize)]
struct CargoDependency {
    name: String,
    #[serde(default)]
    rename: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}

/// Checks what the crate says against what its component says, and returns the capabilities
/// for the index: `describe()`'s, in its order, with the metadata's scope hints. Refuses a
/// disagreement on any field both carry, naming the crate, the field and both values.
pub fn reconcile(
    package: &str,
    version: &semver::Version,
    metadata: &FaultlineMetadata,
    described: &Described,
) -> Result<Vec<CapabilityDecl>, HubError> {
    let disagree = |field: &str, crate_says: String, component_says: String| {
        HubError::Config(format!(
            "{package}: {field} is {crate_says} in Cargo.toml but the component's describe() \
             says {component_says}; make them agree (or drop the field from the metadata)"
        ))
    };
    if described.name != package {
        return Err(disagree(
            "[package] name",
            format!("`{package}`"),
            format!("`{}`", described.name),
        ));
    }
    if semver::Version::parse(&described.version).ok().as_ref() != Some(version) {
        return Err(disagree(
            "[package] version",
            format!("`{version}`"),
            format!("`{}`", described.version),
        ));
    }
    const FIELD: &str = "[package.metadata.faultline]";
    if let Some(kind) = metadata.kind
        && kind != described.kind
    {
        return Err(disagree(
            &format!("{FIELD} kind"),
            format!("`{kind}`"),
            format!("`{}` (the world it exports)", described.kind),
        ));
    }
    if let Some(capabilities) = &metadata.capabilities {
        let set = |c: &[Capability]| c.iter().copied().collect::<std::collections::BTreeSet<_>>();
        if set(capabilities) != set(&described.capabilities) {
            return Err(disagree(
                &format!("{FIELD} capabilities"),
                names(capabilities),
                names(&described.capabilities),
            ));
        }
    }
    if let Some(revertible) = metadata.revertible
        && revertible != described.revertible
    {
        return Err(disagree(
            &format!("{FIELD} revertible"),
            revertible.to_string(),
            described.revertible.to_string(),
        ));
    }
    if let Some(contract) = &metadata.contract
        && contract != &described.contract
    {
        return Err(disagree(
            &format!("{FIELD} contract"),
            format!("`{contract}`"),
            format!(
                "`{}` (the contract it was checked against)",
                described.contract
            ),
        ));
    }
    if let Some(undeclared) = metadata
        .scopes
        .keys()
        .find(|c| !described.capabilities.contains(c))
    {
        return Err(HubError::Config(format!(
            "{package}: {FIELD} scopes has hints for `{}`, a capability the \
             component's describe() does not declare (it declares {})",
            undeclared.interface(),
            names(&described.capabilities)
        )));
    }
    Ok(described
        .capabilities
        .iter()
        .map(|c| CapabilityDecl {
            interface: *c,
            scope: metadata.scopes.get(c).cloned(),
        })
        .collect())
}

fn names(capabilities: &[Capability]) -> String {
    let names: Vec<&str> = capabilities.iter().map(|c| c.interface()).collect();
    format!("[{}]", names.join(", "))
}

/// The SDK crate every published fault and probe builds against.
const SDK: &str = "faultline-sdk";

/// Builds the fault and probe crates of `options.crates` for `wasm32-wasip2` with reproducible
/// settings (`--locked`, no debug info, local and `$CARGO_HOME` paths remapped; see
/// [`reproducible_rustflags`]), one cargo invocation per package so a component's bytes do not
/// depend on what else is built. Asks each built component to describe itself through
/// `inspector` (and checks its imports against that), copies the components into
/// `hub/components/` beside the index, and updates the index. Nothing is written unless every
/// component passes. When the index changes, its serial is bumped, its times renewed, and the
/// now-invalid signature file removed: sign it again. Cargo's output is captured and returned
/// in errors. Cargo's target directory is its own (`CARGO_TARGET_DIR` and cargo's
/// configuration are honoured).
///
/// Blocking (cargo, files, and [`ComponentImports::describe`]): call it from the blocking pool.
pub fn build(
    options: &BuildOptions,
    inspector: &dyn ComponentImports,
) -> Result<BuildReport, HubError> {
    // The index first: a build that cannot be recorded is not started.
    let index_path = &options.index;
    let existing = match std::fs::read(index_path) {
        Ok(bytes) => Index::parse(&bytes, &index_path.display().to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HubError::Config(format!(
                "there is no hub index at {}: start a hub there with `faultline hub init --id \
                 <id> --name <name>`, or point --index at an existing one",
                index_path.display()
            )));
        }
        Err(e) => return Err(HubError::io(format!("reading {}", index_path.display()), e)),
    };
    let components = index_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("hub/components");

    let manifest = manifest_of(&options.crates)?;
    ensure_lock_file(&manifest)?;
    let metadata_out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| HubError::io("running cargo metadata", e))?;
    check_status("cargo metadata", &metadata_out)?;
    let metadata: CargoMetadata = serde_json::from_slice(&metadata_out.stdout)
        .map_err(|e| HubError::Config(format!("reading cargo metadata: {e}")))?;
    check_wasm_target(&metadata.workspace_root)?;

    let selected = select(&metadata, &options.packages, &manifest)?;
    check_sdk_contract(&metadata)?;

    let local = local_dependencies(&metadata);
    let notes = local
        .iter()
        .map(|(name, dir)| {
            format!(
                "{name} is a path dependency outside the workspace ({}): cargo derives its \
                 symbol hashes from that absolute path, so these bytes are reproducible only \
                 from the same directory; a git or registry dependency, or a copy inside the \
                 workspace, is reproducible anywhere",
                dir.display()
            )
        })
        .collect();
    let flags = reproducible_rustflags(&metadata.workspace_root, &local, cargo_home().as_deref());
    for (package, _) in &selected {
        let mut command = cargo();
        command
            .current_dir(&metadata.workspace_root)
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
            .env("CARGO_ENCODED_RUSTFLAGS", &flags);
        // Nothing from an outer build (a build script, `cargo run`) may change the bytes.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            command.env_remove(var);
        }
        let out = command
            .output()
            .map_err(|e| HubError::io(format!("running cargo build -p {}", package.name), e))?;
        check_status(&format!("cargo build -p {}", package.name), &out)?;
    }

    let mut artifacts = Vec::new();
    let mut files = Vec::new();
    for (package, meta) in selected {
        let target = cdylib(package)?;
        let wasm = metadata
            .target_directory
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", target.name.replace('-', "_")));
        let bytes = std::fs::read(&wasm)
            .map_err(|e| HubError::io(format!("reading {}", wasm.display()), e))?;
        let artifact = describe_artifact(package, &meta, &bytes, inspector)?;
        files.push((
            components.join(format!("{}-{}.wasm", package.name, package.version)),
            bytes,
        ));
        artifacts.push(artifact);
    }

    let (index, changed) = apply(
        existing,
        &artifacts,
        SystemTime::now(),
        options.validity,
        options.force,
    )?;
    std::fs::create_dir_all(&components)
        .map_err(|e| HubError::io(format!("creating {}", components.display()), e))?;
    let mut built = Vec::new();
    for ((dest, bytes), artifact) in files.into_iter().zip(&artifacts) {
        write_published(&dest, &bytes)?;
        built.push(Built {
            name: artifact.name.clone(),
            version: artifact.version.clone(),
            digest: artifact.digest,
            size: artifact.size,
            path: dest,
        });
    }
    if changed {
        write_index(index_path, &index)?;
    }
    Ok(BuildReport {
        built,
        index_changed: changed,
        serial: index.serial,
        notes,
    })
}

/// Writes `index` to `path` atomically and removes the signature file beside it, which no
/// longer matches: the curator signs again.
pub(crate) fn write_index(path: &Path, index: &Index) -> Result<(), HubError> {
    write_published(path, &index.to_json_pretty()?)?;
    let sig = super::signature_path(path);
    match std::fs::remove_file(&sig) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HubError::io(format!("removing stale {}", sig.display()), e)),
    }
}

/// Writes a file of the hub atomically, readable by all (0644): a web server or a mirror's copy
/// serves it, unlike the cache's private files.
fn write_published(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    write_atomic(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| HubError::io(format!("making {} readable", path.display()), e))?;
    }
    Ok(())
}

/// `crates` as a manifest path: the directory's `Cargo.toml`, or the file itself.
fn manifest_of(crates: &Path) -> Result<PathBuf, HubError> {
    let manifest = if crates.is_dir() {
        crates.join("Cargo.toml")
    } else {
        crates.to_path_buf()
    };
    if !manifest.is_file() {
        return Err(HubError::Config(format!(
            "{} is not a directory of fault crates: there is no {} (give the directory that \
             holds the crates' Cargo.toml, a workspace or one package)",
            crates.display(),
            manifest.display()
        )));
    }
    manifest
        .canonicalize()
        .map_err(|e| HubError::io(format!("resolving {}", manifest.display()), e))
}

/// A reproducible build needs a lock file; a new crate has none until its first build, so
/// one is written (and the crate should commit it).
fn ensure_lock_file(manifest: &Path) -> Result<(), HubError> {
    let out = cargo()
        .args([
            "locate-project",
            "--workspace",
            "--message-format",
            "plain",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| HubError::io("running cargo locate-project", e))?;
    check_status("cargo locate-project", &out)?;
    let root_manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let lock = root_manifest.with_file_name("Cargo.lock");
    if lock.exists() {
        return Ok(());
    }
    let out = cargo()
        .args(["generate-lockfile", "--manifest-path"])
        .arg(&root_manifest)
        .output()
        .map_err(|e| HubError::io("running cargo generate-lockfile", e))?;
    check_status(
        &format!(
            "cargo generate-lockfile (there was no {}; builds are reproducible from it, commit it)",
            lock.display()
        ),
        &out,
    )
}

/// Refuses before compiling when the toolchain cargo uses in `workspace` cannot build
/// for `wasm32-wasip2`.
fn check_wasm_target(workspace: &Path) -> Result<(), HubError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .current_dir(workspace)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .map_err(|e| HubError::io("running rustc --print target-libdir", e))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && libdir.is_dir() {
        return Ok(());
    }
    Err(HubError::Config(format!(
        "the Rust toolchain used in {} cannot build for wasm32-wasip2 (no {}): run `rustup \
         target add wasm32-wasip2` there, or list it under `targets` in its rust-toolchain.toml",
        workspace.display(),
        if libdir.as_os_str().is_empty() {
            "target library directory".to_string()
        } else {
            libdir.display().to_string()
        }
    )))
}

/// The workspace members to publish, each with its metadata, every check that needs no build
/// done: a member depending on `faultline-sdk` is published (or each named in `wanted`).
fn select<'m>(
    metadata: &'m CargoMetadata,
    wanted: &[String],
    manifest: &Path,
) -> Result<Vec<(&'m CargoPackage, FaultlineMetadata)>, HubError> {
    let members: Vec<&CargoPackage> = metadata
        .packages
        .iter()
        .filter(|p| metadata.workspace_members.contains(&p.id))
        .collect();
    for name in wanted {
        if !members.iter().any(|p| &p.name == name) {
            let names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
            return Err(HubError::Config(format!(
                "package `{name}` is not a member of {} (members: {})",
                manifest.display(),
                names.join(", ")
            )));
        }
    }
    let mut selected = Vec::new();
    for package in members {
        let sdk = package
            .dependencies
            .iter()
            .find(|d| d.name == SDK && d.kind.is_none());
        if wanted.is_empty() && sdk.is_none() {
            continue;
        }
        if !wanted.is_empty() && !wanted.contains(&package.name) {
            continue;
        }
        let name = &package.name;
        let sdk = sdk.ok_or_else(|| {
            HubError::Config(format!(
                "{name}: does not depend on {SDK}: a fault or probe is written against it \
                 (`faultline new fault {name}` makes a crate that does)"
            ))
        })?;
        if !sdk.features.iter().any(|f| f == "fault" || f == "probe") {
            return Err(HubError::Config(format!(
                "{name}: its {SDK} dependency enables neither the `fault` nor the `probe` \
                 feature, so it can export neither world{}",
                sdk.rename
                    .as_ref()
                    .map(|r| format!(" (renamed `{r}`)"))
                    .unwrap_or_default()
            )));
        }
        if !super::index::is_identifier(name) {
            return Err(HubError::Config(format!(
                "{name}: not a hub package name (lower-case letters, digits, `.`, `_` and `-`, \
                 starting with a letter or digit, at most 64)"
            )));
        }
        cdylib(package)?;
        let meta: FaultlineMetadata =
            match package.metadata.as_ref().and_then(|m| m.get("faultline")) {
                Some(meta) => serde_json::from_value(meta.clone()).map_err(|e| {
                    HubError::Config(format!(
                        "{name}: [package.metadata.faultline]: {e} (name, version, summary, kind, \
                     capabilities, parameter schema and revertible come from the component's \
                     describe(); the table holds `categories` and `scopes`)"
                    ))
                })?,
                None => FaultlineMetadata::default(),
            };
        // The schema is describe()'s; a file beside the crate would be a second, stale truth.
        let crate_dir = package.manifest_path.parent().unwrap_or(Path::new("."));
        let stale = crate_dir.join("params.schema.json");
        if stale.exists() {
            return Err(HubError::Config(format!(
                "{name}: {} is not read: the parameter schema is the one the component's \
                 describe() publishes; delete the file",
                stale.display()
            )));
        }
        selected.push((package, meta));
    }
    if selected.is_empty() {
        return Err(HubError::Config(format!(
            "no member of {} depends on {SDK}: nothing to publish",
            manifest.display()
        )));
    }
    Ok(selected)
}

/// The package's cdylib target, the one a component is made from.
fn cdylib(package: &CargoPackage) -> Result<&CargoTarget, HubError> {
    package
        .targets
        .iter()
        .find(|t| t.kind.iter().any(|k| k == "cdylib"))
        .ok_or_else(|| {
            HubError::Config(format!(
                "{}: no cdylib target to build a component from: add `[lib] crate-type = \
                 [\"cdylib\"]` to its Cargo.toml",
                package.name
            ))
        })
}

/// Refuses before compiling an SDK whose contract this runtime does not implement, reading
/// the `package faultline:contract@x.y.z;` line of its `wit/faultline.wit`.
fn check_sdk_contract(metadata: &CargoMetadata) -> Result<(), HubError> {
    let Some(sdk) = metadata.packages.iter().find(|p| p.name == SDK) else {
        return Ok(()); // `select` has refused every crate without it
    };
    let wit = sdk
        .manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("wit/faultline.wit");
    let text = std::fs::read_to_string(&wit).map_err(|e| {
        HubError::Config(format!(
            "{SDK} {} has no contract at {} ({e}): use the SDK as published (a git or path \
             dependency on its directory, which holds wit/), not a copy of src/ alone",
            sdk.version,
            wit.display()
        ))
    })?;
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package faultline:contract@"))
        .map(|v| v.trim_end_matches(';').trim().to_string())
        .ok_or_else(|| {
            HubError::Config(format!(
                "{} does not declare `package faultline:contract@<version>;`",
                wit.display()
            ))
        })?;
    let ours = crate::contract::VERSION;
    let compatible = match (
        semver::Version::parse(&version),
        semver::Version::parse(ours),
    ) {
        (Ok(a), Ok(b)) if a.major == 0 && b.major == 0 => a.minor == b.minor && a <= b,
        (Ok(a), Ok(b)) => a.major == b.major && a <= b,
        _ => false,
    };
    if !compatible {
        return Err(HubError::Config(format!(
            "{SDK} {} builds against faultline:contract@{version}, which this faultline (contract \
             {ours}) cannot load: use an SDK for contract {ours}",
            sdk.version
        )));
    }
    Ok(())
}

/// Local packages (path dependencies) outside the workspace root, by name: rustc sees their
/// absolute paths, which [`reproducible_rustflags`] remaps.
fn local_dependencies(metadata: &CargoMetadata) -> Vec<(String, PathBuf)> {
    let root = canonical(&metadata.workspace_root);
    let mut local: Vec<(String, PathBuf)> = metadata
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .filter_map(|p| {
            p.manifest_path
                .parent()
                .map(|d| (p.name.clone(), canonical(d)))
        })
        .filter(|(_, dir)| !dir.starts_with(&root))
        .collect();
    local.sort();
    local.dedup();
    local
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Asks the built component `bytes` of `package` to describe itself, reconciles that with the
/// crate's metadata, and checks the component's imports stay within what it describes.
fn describe_artifact(
    package: &CargoPackage,
    meta: &FaultlineMetadata,
    bytes: &[u8],
    inspector: &dyn ComponentImports,
) -> Result<Artifact, HubError> {
    let name = &package.name;
    let described = inspector
        .describe(bytes)
        .map_err(|e| HubError::BuiltRefused {
            package: name.clone(),
            version: package.version.to_string(),
            reason: format!("{e:#}"),
        })?;
    let capabilities = reconcile(name, &package.version, meta, &described)?;
    let file = format!("{name}-{}.wasm", package.version);
    let digest = Digest::of(bytes);
    let artifact = Artifact {
        name: name.clone(),
        version: package.version.clone(),
        kind: described.kind,
        description: described.summary,
        categories: meta.categories.clone(),
        maintainers: package.authors.clone(),
        source: package.repository.clone(),
        contract: described.contract,
        capabilities,
        params_schema: described.params_schema,
        revertible: described.revertible,
        digest,
        size: bytes.len() as u64,
        url: format!("hub/components/{file}"),
    };
    let imports = inspector
        .imported_interfaces(bytes)
        .map_err(|e| HubError::Config(format!("{name}: reading the component's imports: {e:#}")))?;
    // The same check agents apply on every pull: refuse here what they would refuse there.
    check_imports(name, &release_of(&artifact), &imports)?;
    Ok(artifact)
}

fn release_of(artifact: &Artifact) -> Release {
    Release {
        version: artifact.version.clone(),
        digest: artifact.digest,
        size: artifact.size,
        urls: vec![artifact.url.clone()],
        contract: artifact.contract.clone(),
        capabilities: artifact.capabilities.clone(),
        params_schema: artifact.params_schema.clone(),
        revertible: artifact.revertible,
        yanked: None,
        deprecated: None,
        extra: Default::default(),
    }
}

/// Records `artifacts` in `index`. A version already published with other bytes is refused
/// unless `force`. When anything changed, the serial is bumped and `generated`/`expires`
/// renewed from `now`. Returns the index and whether it changed.
pub fn apply(
    mut index: Index,
    artifacts: &[Artifact],
    now: SystemTime,
    validity: Duration,
    force: bool,
) -> Result<(Index, bool), HubError> {
    let before = index.clone();
    for artifact in artifacts {
        let release = release_of(artifact);
        let pos = index.packages.iter().position(|p| p.name == artifact.name);
        let package = match pos {
            Some(i) => &mut index.packages[i],
            None => {
                index.packages.push(Package {
                    name: artifact.name.clone(),
                    kind: artifact.kind,
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
        package.kind = artifact.kind;
        package.description = artifact.description.clone();
        package.categories = artifact.categories.clone();
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

/// The flags that make a component's bytes independent of where it was built: no debug
/// info; the workspace root as `/src`, each local dependency outside it as `/src/<name>`,
/// and the cargo home (registry and git sources) as `/cargo`. Members are compiled with paths
/// relative to the workspace root already. `tests/build.rs` builds the bundled hub with the
/// same flags, in the same order.
pub fn reproducible_rustflags(
    workspace: &Path,
    local: &[(String, PathBuf)],
    cargo_home: Option<&Path>,
) -> String {
    let mut flags = vec![
        "-Cdebuginfo=0".to_string(),
        format!(
            "--remap-path-prefix={}=/src",
            canonical(workspace).display()
        ),
    ];
    for (name, dir) in local {
        flags.push(format!("--remap-path-prefix={}=/src/{name}", dir.display()));
    }
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join("\u{1f}")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn artifact(version: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            name: "process-pause".into(),
            version: version.parse().unwrap(),
            kind: Kind::Fault,
            description: "Pauses processes".into(),
            categories: vec!["process".into()],
            maintainers: vec!["Faultline".into()],
            source: None,
            contract: "faultline:contract@0.1.0".into(),
            capabilities: vec![CapabilityDecl {
                interface: Capability::Process,
                scope: None,
            }],
            params_schema: Map::new(),
            revertible: true,
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            url: format!("hub/components/process-pause-{version}.wasm"),
        }
    }

    fn described() -> Described {
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "max_targets": { "type": "integer" } }
        });
        Described {
            name: "process-pause".into(),
            version: "0.1.0".into(),
            summary: "Pauses processes".into(),
            kind: Kind::Fault,
            params_schema: schema.as_object().cloned().unwrap(),
            capabilities: vec![Capability::Log, Capability::Rollback, Capability::Process],
            revertible: true,
            contract: "faultline:contract@0.1.0".into(),
        }
    }

    fn metadata(toml_text: &str) -> FaultlineMetadata {
        let value: toml::Value = toml::from_str(toml_text).unwrap();
        serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
    }

    fn refusal(meta: &FaultlineMetadata, d: &Described) -> String {
        let v = semver::Version::new(0, 1, 0);
        reconcile("process-pause", &v, meta, d)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn capabilities_come_from_describe_with_the_metadata_scopes() {
        let meta = metadata(
            r#"
            categories = ["process"]
            scopes = { process = { signals = ["SIGSTOP", "SIGCONT"] } }
            "#,
        );
        let v = semver::Version::new(0, 1, 0);
        let caps = reconcile("process-pause", &v, &meta, &described()).unwrap();
        let interfaces: Vec<_> = caps.iter().map(|c| c.interface).collect();
        assert_eq!(
            interfaces,
            [Capability::Log, Capability::Rollback, Capability::Process]
        );
        assert_eq!(caps[0].scope, None);
        assert_eq!(
            caps[2].scope.as_ref().map(|s| Value::Object(s.clone())),
            Some(serde_json::json!({"signals": ["SIGSTOP", "SIGCONT"]}))
        );
        // Assertions that agree pass; capabilities compare as a set.
        let agreeing = metadata(
            r#"
            kind = "fault"
            capabilities = ["process", "log", "rollback"]
            revertible = true
            contract = "faultline:contract@0.1.0"
            "#,
        );
        reconcile("process-pause", &v, &agreeing, &described()).unwrap();
    }

    #[test]
    fn metadata_that_disagrees_with_describe_is_refused_naming_both() {
        let d = described();
        let e = refusal(&metadata("revertible = false"), &d);
        assert!(e.contains("process-pause"), "{e}");
        assert!(e.contains("revertible is false"), "{e}");
        assert!(e.contains("describe() says true"), "{e}");

        let e = refusal(&metadata(r#"capabilities = ["log", "network"]"#), &d);
        assert!(e.contains("capabilities is [log, network]"), "{e}");
        assert!(e.contains("says [log, rollback, process]"), "{e}");

        let e = refusal(&metadata(r#"kind = "probe""#), &d);
        assert!(e.contains("kind is `probe`"), "{e}");
        assert!(e.contains("says `fault`"), "{e}");

        let e = refusal(&metadata(r#"contract = "faultline:contract@0.2.0""#), &d);
        assert!(e.contains("`faultline:contract@0.2.0`"), "{e}");
        assert!(e.contains("`faultline:contract@0.1.0`"), "{e}");

        let e = refusal(&metadata(r#"scopes = { network = { ports = [53] } }"#), &d);
        assert!(e.contains("hints for `network`"), "{e}");
        assert!(e.contains("declares [log, rollback, process]"), "{e}");

        // [package] name and version are carried by both too.
        let mut other = described();
        other.name = "process-stop".into();
        let e = refusal(&FaultlineMetadata::default(), &other);
        assert!(e.contains("[package] name is `process-pause`"), "{e}");
        assert!(e.contains("says `process-stop`"), "{e}");
        let mut other = described();
        other.version = "0.2.0".into();
        let e = refusal(&FaultlineMetadata::default(), &other);
        assert!(e.contains("[package] version is `0.1.0`"), "{e}");
        assert!(e.contains("says `0.2.0`"), "{e}");
    }

    #[test]
    fn unknown_metadata_fields_are_refused() {
        let value = serde_json::json!({"kind": "fault", "params_schema": {}});
        let e = serde_json::from_value::<FaultlineMetadata>(value).unwrap_err();
        assert!(e.to_string().contains("params_schema"), "{e}");
    }

    #[test]
    fn apply_adds_orders_bumps_and_refuses_republish() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let day = Duration::from_secs(86_400);
        let empty = super::super::edit::new_index("acme", "Acme", now, day).unwrap();
        assert_eq!(empty.serial, 1);
        let (index, changed) = apply(empty, &[artifact("0.1.0", b"a")], now, day, false).unwrap();
        assert!(changed);
        assert_eq!(index.serial, 2);
        let (index, changed) = apply(index, &[artifact("0.2.0", b"b")], now, day, false).unwrap();
        assert!(changed);
        assert_eq!(index.serial, 3);
        let versions: Vec<_> = index.packages[0]
            .versions
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        assert_eq!(versions, ["0.2.0", "0.1.0"]);
        let (same, changed) =
            apply(index.clone(), &[artifact("0.2.0", b"b")], now, day, false).unwrap();
        assert!(!changed);
        assert_eq!(same.serial, 3);
        assert!(apply(index.clone(), &[artifact("0.2.0", b"c")], now, day, false).is_err());
        assert!(apply(index, &[artifact("0.2.0", b"c")], now, day, true).is_ok());
        // The result is a valid index.
        let bytes = same.to_json_pretty().unwrap();
        Index::parse(&bytes, "t").unwrap();
    }
}
