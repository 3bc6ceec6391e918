//! `faultline hub ...`: browse, pull and verify hub packages; for authors and curators, start
//! a hub, make keys, build, sign, lint, yank and renew.
//!
//! Exit codes: 0 ok; 1 a failure (lint or artefact findings, nothing found, a download that
//! failed); 2 a usage or configuration error; 3 refused (no trust configured to verify with,
//! a signature, digest or rollback check failed, curation refused it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::hub::build::{BuildOptions, build};
use crate::hub::lint::{artifact_findings, lint};
use crate::hub::{
    ComponentImports, Digest, Hub, HubConfig, HubError, Index, SourceOutcome, catalog, edit,
    open_hub, sign, signature_path, verify_file,
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
    /// Start a hub: write a new, empty index with its own id (sign it after `hub build`).
    Init {
        /// The hub's stable id (`[a-z0-9][a-z0-9._-]*`); agents key the cache and rollback
        /// protection by it, so it must be unique and never change.
        #[arg(long)]
        id: String,
        /// A display name.
        #[arg(long)]
        name: String,
        /// Where to write the index.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
        /// How long the index stays valid.
        #[arg(long, default_value = "90d")]
        valid_for: humantime::Duration,
    },
    /// Build fault and probe crates for wasm32-wasip2 reproducibly and publish them in an index.
    Build {
        /// The crates: a cargo workspace or one package (its directory or Cargo.toml).
        #[arg(default_value = ".")]
        crates: PathBuf,
        /// The index to update; components are copied to `hub/components/` beside it.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
        /// Only this package (repeatable); default: every member that depends on faultline-sdk.
        #[arg(long = "package", short = 'p')]
        packages: Vec<String>,
        /// How long the rewritten index stays valid.
        #[arg(long, default_value = "90d")]
        valid_for: humantime::Duration,
        /// Replace a published version whose bytes changed.
        #[arg(long)]
        force: bool,
    },
    /// Withdraw a release: resolution skips it unless it is pinned exactly.
    Yank {
        /// `name@version` (an exact version).
        release: String,
        /// Why, for the people whose resolution now skips it.
        #[arg(long)]
        reason: String,
        /// The index to edit.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
    },
    /// Move the index's expiry on (new serial and times) when nothing else changed.
    Renew {
        /// The index to renew.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
        /// How long it stays valid from now.
        #[arg(long, default_value = "90d")]
        valid_for: humantime::Duration,
    },
    /// Bring a yanked release back.
    Unyank {
        /// `name@version` (an exact version).
        release: String,
        /// The index to edit.
        #[arg(long, default_value = "hub-index.json")]
        index: PathBuf,
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
/// imports. Writes results and problems to `out`; returns the exit code. Commands that only
/// read and write files (keygen, build, sign, lint) run on the blocking pool.
pub async fn run(
    cmd: HubCommand,
    config: &HubConfig,
    imports: Arc<dyn ComponentImports>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let result = match cmd {
        HubCommand::List(sync) => list(config, &sync, None, out).await,
        HubCommand::Search { query, sync } => list(config, &sync, Some(&query), out).await,
        HubCommand::Show { reference, sync } => show(config, &sync, &reference, out).await,
        HubCommand::Pull { reference, sync } => {
            pull(config, &sync, &reference, imports.as_ref(), out).await
        }
        HubCommand::Verify { index, sync } => verify(config, &sync, index, out).await,
        HubCommand::Keygen {
            out: key_path,
            id,
            force,
        } => offload(out, move |out| keygen(&key_path, id, force, out)).await,
        HubCommand::Init {
            id,
            name,
            index,
            valid_for,
        } => {
            offload(out, move |out| {
                init_cmd(&index, &id, &name, valid_for.into(), out)
            })
            .await
        }
        HubCommand::Build {
            crates,
            index,
            packages,
            valid_for,
            force,
        } => {
            let options = BuildOptions {
                crates,
                index,
                packages,
                validity: valid_for.into(),
                force,
            };
            offload(out, move |out| build_cmd(options, imports.as_ref(), out)).await
        }
        HubCommand::Yank {
            release,
            reason,
            index,
        } => {
            offload(out, move |out| {
                yank_cmd(&index, &release, Some(&reason), out)
            })
            .await
        }
        HubCommand::Unyank { release, index } => {
            offload(out, move |out| yank_cmd(&index, &release, None, out)).await
        }
        HubCommand::Renew { index, valid_for } => {
            offload(out, move |out| {
                let renewed = edit::renew(&index, valid_for.into())?;
                let _ = writeln!(
                    out,
                    "{} renewed: serial {}, valid until {}; sign it again (faultline hub sign)",
                    index.display(),
                    renewed.serial,
                    renewed.expires
                );
                Ok(0)
            })
            .await
        }
        HubCommand::Sign { key, key_id, index } => {
            offload(out, move |out| sign_cmd(&key, key_id, &index, out)).await
        }
        HubCommand::Lint { index } => {
            offload(out, move |out| lint_cmd(&index, imports.as_ref(), out)).await
        }
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            Ok(exit_code(&e))
        }
    }
}

/// Runs file-bound work on the blocking pool, then copies what it wrote to `out`.
async fn offload<F>(out: &mut dyn Write, work: F) -> Result<i32, HubError>
where
    F: FnOnce(&mut Vec<u8>) -> Result<i32, HubError> + Send + 'static,
{
    let (text, result) = tokio::task::spawn_blocking(move || {
        let mut text = Vec::new();
        let result = work(&mut text);
        (text, result)
    })
    .await
    .map_err(|e| {
        HubError::io(
            "the hub command did not finish",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let _ = out.write_all(&text);
    result
}

fn exit_code(e: &HubError) -> i32 {
    match e {
        HubError::Config(_) | HubError::BadReference { .. } => 2,
        e if e.is_refusal() => 3,
        _ => 1,
    }
}

/// Opens and syncs the hub; writes sync problems as warnings.
async fn open(config: &HubConfig, sync: &SyncArgs, out: &mut dyn Write) -> Result<Hub, HubError> {
    let mut config = config.clone();
    config.offline |= sync.offline;
    config.allow_expired |= sync.allow_expired;
    let (hub, problems) = open_hub(config).await?;
    for problem in problems {
        let _ = writeln!(out, "warning: {problem}");
    }
    Ok(hub)
}

async fn list(
    config: &HubConfig,
    sync: &SyncArgs,
    query: Option<&str>,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let hub = open(config, sync, out).await?;
    let rows: Vec<[String; 5]> = catalog::list(&hub, query, None)
        .into_iter()
        .map(|l| [l.name, l.kind.to_string(), l.version, l.hub, l.description])
        .collect();
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no packages{}",
            query.map(|q| format!(" match `{q}`")).unwrap_or_default()
        );
        return Ok(if query.is_some() { 1 } else { 0 });
    }
    print_table(
        &["NAME", "KIND", "VERSION", "HUB", "DESCRIPTION"],
        &rows,
        out,
    );
    Ok(0)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]], out: &mut dyn Write) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn show(
    config: &HubConfig,
    sync: &SyncArgs,
    reference: &str,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let hub = open(config, sync, out).await?;
    let (package, resolved) = catalog::show(&hub, reference)?;
    let _ = writeln!(out, "{} ({})", package.name, package.kind);
    let _ = writeln!(out, "  {}", package.description);
    if !package.categories.is_empty() {
        let _ = writeln!(out, "  categories:  {}", package.categories.join(", "));
    }
    if !package.maintainers.is_empty() {
        let _ = writeln!(out, "  maintainers: {}", package.maintainers.join(", "));
    }
    if let Some(source) = &package.source {
        let _ = writeln!(out, "  source:      {source}");
    }
    let _ = writeln!(out, "  versions:");
    for release in &package.versions {
        let mut notes = Vec::new();
        if let Some(y) = &release.yanked {
            notes.push(format!("yanked: {}", y.reason));
        }
        if let Some(d) = &release.deprecated {
            notes.push(format!("deprecated: {}", d.reason));
        }
        let chosen = matches!(&resolved, Ok(r) if r.release.version == release.version);
        let _ = writeln!(
            out,
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
                .map(|c| c.interface.interface())
                .collect();
            let _ = writeln!(
                out,
                "  resolves to {}@{} from hub {}",
                package.name, r.release.version, r.hub
            );
            let _ = writeln!(out, "    contract:     {}", r.release.contract);
            let _ = writeln!(out, "    capabilities: {}", caps.join(", "));
            let _ = writeln!(out, "    revertible:   {}", r.release.revertible);
            let schema = serde_json::to_string_pretty(&r.release.params_schema).unwrap_or_default();
            let _ = writeln!(
                out,
                "    parameters:   {}",
                schema.replace('\n', "\n                  ")
            );
            for warning in &r.warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
            Ok(0)
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            Ok(exit_code(e))
        }
    }
}

async fn pull(
    config: &HubConfig,
    sync: &SyncArgs,
    reference: &str,
    imports: &dyn ComponentImports,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let hub = open(config, sync, out).await?;
    let resolved = hub.resolve(reference)?;
    let pulled = hub.pull(&resolved, imports).await?;
    for warning in &pulled.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let _ = writeln!(
        out,
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
    index: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let mut config = config.clone();
    config.allow_expired |= sync.allow_expired;
    if let Some(path) = index {
        return offload(out, move |out| verify_index_file(&path, &config, out)).await;
    }
    config.offline |= sync.offline;
    // Opening creates the cache directories: disk work.
    let mut hub = tokio::task::spawn_blocking(move || Hub::open(config))
        .await
        .map_err(|e| HubError::io("opening the hub", std::io::Error::other(e.to_string())))??;
    let report = hub.sync().await;
    let mut failed = false;
    let mut refused = false;
    for source in &report.sources {
        let loaded = source
            .loaded
            .as_ref()
            .map(|(id, serial)| format!(" (hub {id}, serial {serial})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}: {}{loaded}", source.source, source.outcome);
        if let SourceOutcome::Stale(e) | SourceOutcome::Failed(e) = &source.outcome {
            failed = true;
            refused |= e.is_refusal();
        }
    }
    for loaded in hub.indexes().iter().filter(|l| l.unverified()) {
        refused = true;
        let _ = writeln!(
            out,
            "{}: not verified: accepted unsigned because its required_signatures is 0",
            loaded.source
        );
    }
    let cache = hub.cache().clone();
    let (blobs, corrupt) = tokio::task::spawn_blocking(move || {
        let blobs = cache.blobs()?;
        let mut corrupt = Vec::new();
        for (digest, path) in &blobs {
            let (actual, _) = Digest::of_file(path)?;
            if actual != *digest {
                corrupt.push(format!("cached blob {} hashes to {actual}", path.display()));
            }
        }
        Ok::<_, HubError>((blobs.len(), corrupt))
    })
    .await
    .map_err(|e| HubError::io("checking the cache", std::io::Error::other(e.to_string())))??;
    for problem in &corrupt {
        let _ = writeln!(out, "error: {problem}");
    }
    let _ = writeln!(
        out,
        "cache {}: {blobs} blob(s), {} corrupt",
        hub.cache().root().display(),
        corrupt.len()
    );
    Ok(if refused || !corrupt.is_empty() {
        3
    } else if failed {
        1
    } else {
        0
    })
}

/// `hub verify --index`: the signatures (at least one valid, from a configured trusted key),
/// then the artefacts beside the index.
fn verify_index_file(
    path: &Path,
    config: &HubConfig,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let parsed = verify_file(path, config)?;
    let problems = artifact_findings(path, &parsed, None);
    for problem in &problems {
        let _ = writeln!(out, "error: {problem}");
    }
    if !problems.is_empty() {
        return Ok(1);
    }
    let _ = writeln!(
        out,
        "{}: hub {} serial {}, {} package(s), signed by a trusted key: ok",
        path.display(),
        parsed.hub.id,
        parsed.serial,
        parsed.packages.len()
    );
    Ok(0)
}

fn keygen(
    key_path: &Path,
    id: Option<String>,
    force: bool,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let public_path = PathBuf::from(format!("{}.pub", key_path.display()));
    for path in [key_path, public_path.as_path()] {
        if path.exists() && !force {
            return Err(HubError::Config(format!(
                "{} exists; pass --force to overwrite it",
                path.display()
            )));
        }
    }
    let key = sign::generate_key();
    let stem = file_stem(key_path);
    let id = id.unwrap_or_else(|| stem.clone());
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| HubError::io(format!("creating {}", dir.display()), e))?;
    }
    write_private(key_path, sign::private_key_pem(&key)?.as_bytes())?;
    let public = key.verifying_key();
    std::fs::write(&public_path, sign::public_key_pem(&public)?)
        .map_err(|e| HubError::io(format!("writing {}", public_path.display()), e))?;
    let _ = writeln!(out, "private key: {}", key_path.display());
    let _ = writeln!(out, "public key:  {}", public_path.display());
    let _ = writeln!(out, "add to the agents' faultline.toml:\n");
    let _ = writeln!(out, "[[hub.trusted_keys]]");
    let _ = writeln!(out, "id = \"{id}\"");
    let _ = writeln!(out, "key = \"{}\"", sign::public_key_base64(&public));
    // `hub sign` names the signature by --key-id, else by the key file's name.
    let key_id = if id == stem {
        String::new()
    } else {
        format!(" --key-id {id}")
    };
    let _ = writeln!(
        out,
        "\nsign with: faultline hub sign --key {}{key_id}",
        key_path.display()
    );
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
    // `mode` only applies to a new file: an older one (`--force`) is made private too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| HubError::io(context(), e))?;
    }
    file.write_all(bytes)
        .map_err(|e| HubError::io(context(), e))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into())
}

fn build_cmd(
    options: BuildOptions,
    inspector: &dyn ComponentImports,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let report = build(&options, inspector)?;
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for built in &report.built {
        let _ = writeln!(
            out,
            "{}@{} {} {} bytes -> {}",
            built.name,
            built.version,
            built.digest,
            built.size,
            built.path.display()
        );
    }
    if report.index_changed {
        let _ = writeln!(
            out,
            "index updated to serial {}; sign it again (faultline hub sign)",
            report.serial
        );
    } else {
        let _ = writeln!(out, "index unchanged (serial {})", report.serial);
    }
    Ok(0)
}

fn init_cmd(
    index: &Path,
    id: &str,
    name: &str,
    validity: std::time::Duration,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let written = edit::init(index, id, name, validity)?;
    let _ = writeln!(
        out,
        "started hub `{}` ({}) at {}, valid until {}\nnext: faultline hub build <crates> --index {}",
        written.hub.id,
        written.hub.name,
        index.display(),
        written.expires,
        index.display()
    );
    Ok(0)
}

fn yank_cmd(
    index: &Path,
    release: &str,
    reason: Option<&str>,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let bad = || HubError::BadReference {
        reference: release.to_string(),
        reason: "expected `name@version` with an exact version, e.g. process-pause@0.1.2".into(),
    };
    let (name, version) = release.split_once('@').ok_or_else(bad)?;
    let version = semver::Version::parse(version.trim_start_matches('=')).map_err(|_| bad())?;
    let (written, changed) = edit::set_yanked(index, name, &version, reason)?;
    let what = if reason.is_some() {
        "yanked"
    } else {
        "unyanked"
    };
    if changed {
        let _ = writeln!(
            out,
            "{what} {name}@{version}; index updated to serial {}; sign it again (faultline hub sign)",
            written.serial
        );
    } else {
        let _ = writeln!(out, "{name}@{version} is {what} already; index unchanged");
    }
    Ok(0)
}

fn sign_cmd(
    key_path: &Path,
    key_id: Option<String>,
    index: &Path,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
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
    let signed = sign::add_signature(existing.as_deref(), sign::sign(&bytes, &key, &key_id))?;
    std::fs::write(&sig_path, signed)
        .map_err(|e| HubError::io(format!("writing {}", sig_path.display()), e))?;
    let _ = writeln!(
        out,
        "signed {} with key `{key_id}` -> {}",
        index.display(),
        sig_path.display()
    );
    Ok(0)
}

fn lint_cmd(
    index: &Path,
    imports: &dyn ComponentImports,
    out: &mut dyn Write,
) -> Result<i32, HubError> {
    let findings = lint(index, imports)?;
    for finding in &findings {
        let _ = writeln!(out, "error: {finding}");
    }
    if findings.is_empty() {
        let _ = writeln!(out, "{}: ok", index.display());
        Ok(0)
    } else {
        let _ = writeln!(out, "{} problem(s)", findings.len());
        Ok(1)
    }
}
