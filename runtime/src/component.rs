//! Where a component's bytes come from, and so who it is: a local file is known by its digest
//! alone; a hub reference resolves through a verified index to a release (hub, name, version,
//! digest). Grants are matched against that [`Identity`], never against what the component
//! says of itself.

use crate::hub::Hub;
use crate::policy::Identity;
use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest component read from a file.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// The longest hub reference a request may carry.
pub const MAX_REFERENCE_LEN: usize = 256;

/// Where to get a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on this host (the CLI only).
    File(PathBuf),
    /// A hub reference: `name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`.
    Hub(String),
}

/// A component's bytes and its identity.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The component.
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub identity: Identity,
    /// What the hub wants an operator to hear (yanked but pinned, deprecated).
    pub warnings: Vec<String>,
}

impl Source {
    /// The CLI's reading of its argument: an existing path, or anything with a `/` or ending in
    /// `.wasm`, is a file; anything else is a hub reference.
    pub fn from_cli(text: &str) -> Source {
        // A directory of that name (a fault's own crate, in its author's workspace) does not
        // make a hub reference a path: only a file, a path with `/`, or a `.wasm` name does.
        if Path::new(text).is_file() || text.contains('/') || text.ends_with(".wasm") {
            Source::File(PathBuf::from(text))
        } else {
            Source::Hub(text.to_string())
        }
    }

    /// The agent's reading of a request: hub references only. Anything that looks like a path is
    /// refused without touching the file system, and the refusal quotes nothing of it.
    pub fn from_request(text: &str) -> Result<Source, String> {
        let looks_like_path = text.contains('/')
            || text.contains('\\')
            || text.starts_with('.')
            || text.starts_with('~')
            || text.ends_with(".wasm");
        if looks_like_path {
            return Err(
                "`component` must be a hub reference (`name`, `name@^1`, `sha256:<hex>`), \
                 not a path: the agent never reads files named by a request"
                    .into(),
            );
        }
        if text.is_empty() || text.len() > MAX_REFERENCE_LEN {
            return Err(format!(
                "`component` must be a hub reference of 1 to {MAX_REFERENCE_LEN} characters"
            ));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("`component` holds whitespace or control characters".into());
        }
        Ok(Source::Hub(text.to_string()))
    }

    /// Fetches the bytes: a file read (bounded, regular files only), or a verified pull from
    /// `hub`. A hub's refusal stays in the error chain as a [`crate::hub::HubError`].
    pub async fn fetch(&self, hub: Option<&Hub>) -> Result<Fetched> {
        match self {
            Source::File(path) => read_local(path).await,
            Source::Hub(reference) => {
                let hub = hub.context("no hub is configured to resolve hub references")?;
                let fetched = hub
                    .fetch_component(reference, &crate::host::ImportLister::new())
                    .await
                    .with_context(|| format!("{reference} is not a usable hub package"))?;
                Ok(Fetched {
                    bytes: fetched.bytes,
                    identity: fetched.identity,
                    warnings: fetched.warnings,
                })
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Hub(r) => f.write_str(r),
        }
    }
}

/// Reads a component file on the blocking pool: a regular file of at most
/// [`MAX_COMPONENT_BYTES`], opened without blocking (a FIFO cannot stall the read) and read
/// bounded (a device such as `/dev/zero` cannot grow the process).
pub async fn read_local(path: &Path) -> Result<Fetched> {
    let path = path.to_path_buf();
    let bytes =
        tokio::task::spawn_blocking(move || read_bounded(&path, MAX_COMPONENT_BYTES, "component"))
            .await
            .context("reading the component panicked")??;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    Ok(Fetched {
        bytes,
        identity: Identity::local(&digest),
        warnings: Vec::new(),
    })
}

/// Reads a regular file of at most `max` bytes, never blocking on a FIFO or reading a device;
/// `what` names the file in errors (`component`, `policy`…).
pub fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = format!("{what} {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot read {text}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {text}"))?;
    if !meta.is_file() {
        bail!("{text} is not a regular file");
    }
    if meta.len() > max {
        bail!(
            "{text} is {} bytes, more than the limit of {max}",
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {text}"))?;
    if bytes.len() as u64 > max {
        bail!("{text} grew past the limit of {max} bytes while it was read");
    }
    Ok(bytes)
}
