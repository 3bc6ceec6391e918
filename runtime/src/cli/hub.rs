//! `faultline hub ...`: browse, pull and verify hub packages; for authors and curators, make
//! keys, build, sign and lint an index.
//!
//! Exit codes: 0 ok, 1 a verification or lint failure, 2 a usage or configuration error.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::hub::build::{BuildOptions, build};
use crate::hub::lint::{artifact_findings, lint};
use crate::hub::{
    ComponentImports, Digest, Hub, HubConfig, HubError, Index, Package, Reference, sign,
    signature_path, verify_file,
};

/// The `faultline hub` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum HubCommand {
    /// List the packages of every configured hub.
    List(SyncArgs),
    /// Search package names, descriptions and categories.
    Search {
        /// Words to look for (case-insensitive).
        query: String,
        /// Sync options.
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Show a package and its releases, or the release a reference resolves to.
    Show {
        /// `name`, `name@<semver req>` or `sha256:<hex>`.
        reference: String,
        /// Sync options.
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Download a component into the cache, verifying digest, size and imports.
    Pull {
        /// `name`, `name@<semver req>`, `name@=<version>` or `sha256:<hex>`.
        reference: String,
        /// Sync options.
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Verify the configured hubs and the cache, or one index file (`--index`).
    Verify {
        /// An index file to verify, with the signature file beside it, instead of the sources.
        #[arg(long)]
        index: Option<PathBuf>,
        /// Sync options.
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Generate an Ed25519 signing key: private PKCS#8 PEM at `--out`, public at `<out>.pub`.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// The key id agents configure; default: the file name without extension.
        #[arg(long)]
        id: Option<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Build `faults/` for wasm32-wasip2 reproducibly and update the index entries.
    Build {
        /// The repository root.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Only this package (repeatable).
        #[arg(long = "package", short = 'p')]
        packages: Vec<String>,
        /// How long the rewritten index stays valid.
        #[arg(long, default_value = "90d")]
        valid_for: humantime::Duration,
        /// Replace a published version whose bytes changed.
        #[arg(long)]
        force: bool,
    },
    /// Add a signature to `<index>.sig` (replacing an earlier one by the same key id).
    Sign {
        /// The private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// The key id; default: the key file name without extension.
        #[arg(long)]
        key_id: Option<String>,
        /// The index to sign.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
    },
    /// Check an index before signing: schema, order, URLs, digests, sizes, imports.
    Lint {
        /// The index to lint.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
    },
}

/// Options for commands that read the configured hubs.
#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {
    /// Do not use the network: read http sources from the cache.
    #[arg(long)]
    pub offline: bool,
    /// Accept indexes past their expiry time.
    #[arg(long)]
    pub allow_expired: bool,
}

/// Runs a hub command with the agent's hub configuration; `imports` reads components'
/// imports. Prints results to stdout and problems to stderr; returns the exit code.
pub async fn run(
    cmd: HubCommand,
    config: &HubConfig,
    imports: &dyn ComponentImports,
) -> anyhow::Result<i32> {
    let result = match cmd {
        HubCommand::List(sync) => list(config, &sync, None).await,
        HubCommand::Search { query, sync } => list(config, &sync, Some(&query)).await,
        HubCommand::Show { reference, sync } => show(config, &sync, &reference).await,
        HubCommand::Pull { reference, sync } => pull(config, &sync, &reference, imports).await,
        HubCommand::Verify { index, sync } => verify(config, &sync, index.as_deref()).await,
        HubCommand::Keygen { out, id, force } => keygen(&out, id, force),
        HubCommand::Build {
            repo,
            packages,
            valid_for,
            force,
        } => build_cmd(BuildOptions {
            repo,
            packages,
            validity: valid_for.into(),
            force,
        }),
        HubCommand::Sign { key, key_id, index } => sign_cmd(&key, key_id, &index),
        HubCommand::Lint { index } => lint_cmd(&index, imports),
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit_code(&e))
        }
    }
}

fn exit_code(e: &HubError) -> i32 {
    match e {
        HubError::Config(_) | HubError::BadReference { .. } => 2,
        _ => 1,
    }
}

/// Opens and syncs the hub; prints sync problems as warnings.
async fn open(config: &HubConfig, sync: &SyncArgs) -> Result<Hub, HubError> {
    let mut config = config.clone();
    config.offline |= sync.offline;
    config.allow_expired |= sync.allow_expired;
    let mut hub = Hub::open(config)?;
    let report = hub.sync().await;
    for problem in report.problems() {
        eprintln!("warning: {problem}");
    }
    if report.nothing_loaded() {
        return Err(HubError::NotFound {
            reference: "hub index".into(),
            reason: "no configured source gave a usable index".into(),
        });
    }
    Ok(hub)
}

async fn list(config: &HubConfig, sync: &SyncArgs, query: Option<&str>) -> Result<i32, HubError> {
    let hub = open(config, sync).await?;
    let words: Vec<String> = query
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for loaded in hub.indexes() {
        for package in &loaded.index.packages {
            if !words.is_empty() && !words.iter().all(|w| matches(package, w)) {
                continue;
            }
            // Shows what `pull <name>` would get, or why not.
            let version = match hub.resolve(&package.name) {
                Ok(r) if r.hub == loaded.index.hub.id => r.release.version.to_string(),
                Ok(_) => "(shadowed)".into(),
                Err(HubError::Denied { .. }) => "(denied)".into(),
                Err(HubError::AboveCeiling { .. }) => "(above ceiling)".into(),
                Err(HubError::Yanked { .. }) => "(yanked)".into(),
                Err(_) => "-".into(),
            };
            rows.push([
                package.name.clone(),
                package.kind.to_string(),
                version,
                loaded.index.hub.id.clone(),
                package.description.clone(),
            ]);
        }
    }
    if rows.is_empty() {
        eprintln!(
            "no packages{}",
            query.map(|q| format!(" match `{q}`")).unwrap_or_default()
        );
        return Ok(if query.is_some() { 1 } else { 0 });
    }
    print_table(&["NAME", "KIND", "VERSION", "HUB", "DESCRIPTION"], &rows);
    Ok(0)
}

fn matches(package: &Package, word: &str) -> bool {
    package.name.to_lowercase().contains(word)
        || package.description.to_lowercase().contains(word)
        || package
            .categories
            .iter()
            .any(|c| c.to_lowercase().contains(word))
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn show(config: &HubConfig, sync: &SyncArgs, reference: &str) -> Result<i32, HubError> {
    let hub = open(config, sync).await?;
    let parsed: Reference = reference.parse()?;
    let resolved = hub.resolve(reference);
    let package = match (&resolved, &parsed) {
        (Ok(r), _) => r.package.clone(),
        (Err(_), Reference::Name { name, .. }) => {
            match hub.indexes().iter().find_map(|l| l.index.package(name)) {
                Some(p) => p.clone(),
                None => return resolved.map(|_| 0),
            }
        }
        (Err(_), Reference::Digest(_)) => return resolved.map(|_| 0),
    };
    println!("{} ({})", package.name, package.kind);
    println!("  {}", package.description);
    if !package.categories.is_empty() {
        println!("  categories:  {}", package.categories.join(", "));
    }
    if !package.maintainers.is_empty() {
        println!("  maintainers: {}", package.maintainers.join(", "));
    }
    if let Some(source) = &package.source {
        println!("  source:      {source}");
    }
    println!("  versions:");
    for release in &package.versions {
        let mut notes = Vec::new();
        if let Some(y) = &release.yanked {
            notes.push(format!("yanked: {}", y.reason));
        }
        if let Some(d) = &release.deprecated {
            notes.push(format!("deprecated: {}", d.reason));
        }
        let chosen = matches!(&resolved, Ok(r) if r.release.version == release.version);
        println!(
            "  {} {:<10} {}  {} bytes{}",
            if chosen { "*" } else { " " },
            release.version,
            release.digest,
            release.size,
            if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join("; "))
            }
        );
    }
    match &resolved {
        Ok(r) => {
            let caps: Vec<_> = r
                .release
                .capabilities
                .iter()
                .map(|c| c.interface.as_str())
                .collect();
            println!(
                "  resolves to {}@{} from hub {}",
                package.name, r.release.version, r.hub
            );
            println!("    contract:     {}", r.release.contract);
            println!("    capabilities: {}", caps.join(", "));
            println!("    revertible:   {}", r.release.revertible);
            let schema = serde_json::to_string_pretty(&r.release.params_schema).unwrap_or_default();
            println!(
                "    parameters:   {}",
                schema.replace('\n', "\n                  ")
            );
            for warning in &r.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit_code(e))
        }
    }
}

async fn pull(
    config: &HubConfig,
    sync: &SyncArgs,
    reference: &str,
    imports: &dyn ComponentImports,
) -> Result<i32, HubError> {
    let hub = open(config, sync).await?;
    let resolved = hub.resolve(reference)?;
    let pulled = hub.pull(&resolved, imports).await?;
    for warning in &pulled.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}@{} {} {}{}",
        pulled.name,
        pulled.version,
        pulled.digest,
        pulled.path.display(),
        if pulled.from_cache { " (cached)" } else { "" }
    );
    Ok(0)
}

async fn verify(
    config: &HubConfig,
    sync: &SyncArgs,
    index: Option<&Path>,
) -> Result<i32, HubError> {
    let mut config = config.clone();
    config.allow_expired |= sync.allow_expired;
    if let Some(path) = index {
        let parsed = verify_file(path, &config)?;
        let problems = artifact_findings(path, &parsed, None);
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        if problems.is_empty() {
            println!(
                "{}: hub {} serial {}, {} package(s): ok",
                path.display(),
                parsed.hub.id,
                parsed.serial,
                parsed.packages.len()
            );
            return Ok(0);
        }
        return Ok(1);
    }
    config.offline |= sync.offline;
    let mut hub = Hub::open(config)?;
    let report = hub.sync().await;
    let mut failed = false;
    for source in &report.sources {
        let loaded = source
            .loaded
            .as_ref()
            .map(|(id, serial)| format!(" (hub {id}, serial {serial})"))
            .unwrap_or_default();
        println!("{}: {}{loaded}", source.source, source.outcome);
        failed |= matches!(
            source.outcome,
            crate::hub::SourceOutcome::Stale(_) | crate::hub::SourceOutcome::Failed(_)
        );
    }
    let blobs = hub.cache().blobs()?;
    let mut corrupt = 0;
    for (digest, path) in &blobs {
        let (actual, _) = Digest::of_file(path)?;
        if actual != *digest {
            corrupt += 1;
            eprintln!("error: cached blob {} hashes to {actual}", path.display());
        }
    }
    println!(
        "cache {}: {} blob(s), {corrupt} corrupt",
        hub.cache().root().display(),
        blobs.len()
    );
    Ok(if failed || corrupt > 0 { 1 } else { 0 })
}

fn keygen(out: &Path, id: Option<String>, force: bool) -> Result<i32, HubError> {
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    for path in [out, public_path.as_path()] {
        if path.exists() && !force {
            return Err(HubError::Config(format!(
                "{} exists; pass --force to overwrite it",
                path.display()
            )));
        }
    }
    let key = sign::generate_key();
    let id = id.unwrap_or_else(|| file_stem(out));
    write_private(out, sign::private_key_pem(&key)?.as_bytes())?;
    let public = key.verifying_key();
    std::fs::write(&public_path, sign::public_key_pem(&public)?)
        .map_err(|e| HubError::io(format!("writing {}", public_path.display()), e))?;
    println!("private key: {}", out.display());
    println!("public key:  {}", public_path.display());
    println!("add to the agents' faultline.toml:\n");
    println!("[[hub.trusted_keys]]");
    println!("id = \"{id}\"");
    println!("key = \"{}\"", sign::public_key_base64(&public));
    Ok(0)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let context = || format!("writing {}", path.display());
    let mut file = options.open(path).map_err(|e| HubError::io(context(), e))?;
    file.write_all(bytes)
        .map_err(|e| HubError::io(context(), e))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into())
}

fn build_cmd(options: BuildOptions) -> Result<i32, HubError> {
    let report = build(&options)?;
    for built in &report.built {
        println!(
            "{}@{} {} {} bytes -> {}",
            built.name,
            built.version,
            built.digest,
            built.size,
            built.path.display()
        );
    }
    if report.index_changed {
        println!(
            "index updated to serial {}; sign it again (faultline hub sign)",
            report.serial
        );
    } else {
        println!("index unchanged (serial {})", report.serial);
    }
    Ok(0)
}

fn sign_cmd(key_path: &Path, key_id: Option<String>, index: &Path) -> Result<i32, HubError> {
    let key = sign::read_signing_key(key_path)?;
    let key_id = key_id.unwrap_or_else(|| file_stem(key_path));
    let bytes = std::fs::read(index)
        .map_err(|e| HubError::io(format!("reading {}", index.display()), e))?;
    // Never sign something agents would refuse to parse.
    Index::parse(&bytes, &index.display().to_string())?;
    let sig_path = signature_path(index);
    let existing = match std::fs::read(&sig_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HubError::io(format!("reading {}", sig_path.display()), e)),
    };
    let out = sign::add_signature(existing.as_deref(), sign::sign(&bytes, &key, &key_id))?;
    std::fs::write(&sig_path, out)
        .map_err(|e| HubError::io(format!("writing {}", sig_path.display()), e))?;
    println!(
        "signed {} with key `{key_id}` -> {}",
        index.display(),
        sig_path.display()
    );
    Ok(0)
}

fn lint_cmd(index: &Path, imports: &dyn ComponentImports) -> Result<i32, HubError> {
    let findings = lint(index, imports)?;
    for finding in &findings {
        eprintln!("error: {finding}");
    }
    if findings.is_empty() {
        println!("{}: ok", index.display());
        Ok(0)
    } else {
        eprintln!("{} problem(s)", findings.len());
        Ok(1)
    }
}
