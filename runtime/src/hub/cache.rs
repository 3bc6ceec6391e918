//! The content-addressed cache: component blobs, the last good index of every hub, and the
//! state that protects against rollback.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>                 components, read-only, named by their digest
//! <cache>/indexes/<hub-id>/hub-index.json    last index accepted for the hub, and its .sig
//! <cache>/indexes/<hub-id>/state.json        highest serial seen and that index's digest
//! <cache>/sources/<sha256 of source>.json    per source: hub id, ETags, digest last served
//! ```
//!
//! Every write goes to a temporary file in the destination's directory and is renamed into
//! place, so readers and concurrent writers only ever see whole files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::{Digest, HubError, INDEX_FILE, SIGNATURE_FILE};

/// The hub's on-disk cache.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A cached index's bytes and its signature file's bytes, if any.
pub(crate) type CachedIndex = (Vec<u8>, Option<Vec<u8>>);

/// Rollback state of one hub id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HubState {
    /// The highest serial accepted.
    pub highest_serial: u64,
    /// The digest of the index accepted with that serial.
    pub digest: Option<Digest>,
}

/// What the cache remembers of one source, for revalidation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SourceState {
    /// The hub id the source served last.
    pub hub_id: Option<String>,
    /// The digest of the index it served last.
    pub index_digest: Option<Digest>,
    /// The index's ETag.
    pub index_etag: Option<String>,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, HubError> {
        let cache = Cache {
            root: root.to_path_buf(),
        };
        for dir in [cache.blob_dir(), root.join("indexes"), root.join("sources")] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                HubError::io(format!("creating cache directory {}", dir.display()), e)
            })?;
        }
        Ok(cache)
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// The cached blob with `digest`, re-hashed; a blob that does not match (corrupted on
    /// disk) is removed and `None` returned, so it is fetched again.
    pub fn verified_blob(&self, digest: &Digest, size: u64) -> Result<Option<PathBuf>, HubError> {
        let path = self.blob_path(digest);
        if !path.is_file() {
            return Ok(None);
        }
        let (actual, actual_size) = Digest::of_file(&path)?;
        if actual == *digest && actual_size == size {
            return Ok(Some(path));
        }
        std::fs::remove_file(&path)
            .map_err(|e| HubError::io(format!("removing corrupt blob {}", path.display()), e))?;
        Ok(None)
    }

    /// The bytes of the blob with `digest`, read whole only if it is at most `limit` bytes,
    /// and hashed again after reading: what was checked is what is returned.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, HubError> {
        use std::io::Read as _;
        let path = self.blob_path(digest);
        let context = || format!("reading {}", path.display());
        let file = std::fs::File::open(&path).map_err(|e| HubError::io(context(), e))?;
        let too_large = || HubError::TooLarge {
            url: path.display().to_string(),
            limit,
        };
        let len = file
            .metadata()
            .map_err(|e| HubError::io(context(), e))?
            .len();
        if len > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| HubError::io(context(), e))?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(HubError::DigestMismatch {
                what: format!("cached blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Every blob in the cache, with the digest its name claims.
    pub fn blobs(&self) -> Result<Vec<(Digest, PathBuf)>, HubError> {
        let dir = self.blob_dir();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| HubError::io(format!("listing {}", dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| HubError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name();
            if let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>() {
                out.push((digest, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A temporary file beside the blobs, for a download in progress.
    pub(crate) fn blob_temp(&self) -> Result<NamedTempFile, HubError> {
        let dir = self.blob_dir();
        NamedTempFile::new_in(&dir)
            .map_err(|e| HubError::io(format!("creating a temporary file in {}", dir.display()), e))
    }

    /// Moves a downloaded and verified temporary file into place as the blob `digest`, then
    /// verifies the file in place. Renaming is atomic: when several pulls of one artefact race,
    /// each renames identical bytes over the other's.
    pub(crate) fn commit_blob(
        &self,
        temp: NamedTempFile,
        digest: &Digest,
        size: u64,
    ) -> Result<PathBuf, HubError> {
        let path = self.blob_path(digest);
        temp.as_file()
            .sync_all()
            .map_err(|e| HubError::io(format!("syncing download of {digest}"), e))?;
        set_read_only(temp.path())?;
        temp.persist(&path)
            .map_err(|e| HubError::io(format!("moving blob into {}", path.display()), e.error))?;
        let (actual, actual_size) = Digest::of_file(&path)?;
        if actual != *digest || actual_size != size {
            return Err(HubError::DigestMismatch {
                what: format!("cached blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(path)
    }

    fn index_dir(&self, hub_id: &str) -> PathBuf {
        self.root.join("indexes").join(hub_id)
    }

    /// The path of the cached index of `hub_id`.
    pub fn index_path(&self, hub_id: &str) -> PathBuf {
        self.index_dir(hub_id).join(INDEX_FILE)
    }

    /// The last good index of `hub_id` and its signature file, if cached.
    pub(crate) fn cached_index(&self, hub_id: &str) -> Result<Option<CachedIndex>, HubError> {
        let dir = self.index_dir(hub_id);
        let Some(index) = read_optional(&dir.join(INDEX_FILE))? else {
            return Ok(None);
        };
        let sig = read_optional(&dir.join(SIGNATURE_FILE))?;
        Ok(Some((index, sig)))
    }

    /// Keeps `index` and its signature as the last good index of `hub_id`.
    pub(crate) fn store_index(
        &self,
        hub_id: &str,
        index: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<(), HubError> {
        let dir = self.index_dir(hub_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HubError::io(format!("creating {}", dir.display()), e))?;
        let sig_path = dir.join(SIGNATURE_FILE);
        match sig {
            Some(sig) => write_atomic(&sig_path, sig)?,
            None => remove_optional(&sig_path)?,
        }
        write_atomic(&dir.join(INDEX_FILE), index)
    }

    /// The rollback state of `hub_id`.
    pub(crate) fn hub_state(&self, hub_id: &str) -> Result<HubState, HubError> {
        read_json(&self.index_dir(hub_id).join("state.json"))
    }

    /// Records the rollback state of `hub_id`.
    pub(crate) fn set_hub_state(&self, hub_id: &str, state: &HubState) -> Result<(), HubError> {
        let dir = self.index_dir(hub_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HubError::io(format!("creating {}", dir.display()), e))?;
        write_json(&dir.join("state.json"), state)
    }

    fn source_path(&self, key: &str) -> PathBuf {
        self.root
            .join("sources")
            .join(format!("{}.json", Digest::of(key.as_bytes()).hex()))
    }

    /// What the cache remembers of the source with `key`.
    pub(crate) fn source_state(&self, key: &str) -> Result<SourceState, HubError> {
        read_json(&self.source_path(key))
    }

    /// Records what the source with `key` served.
    pub(crate) fn set_source_state(&self, key: &str, state: &SourceState) -> Result<(), HubError> {
        write_json(&self.source_path(key), state)
    }
}

/// Runs disk work (reads, fsync, renames, hashing files) on tokio's blocking pool, so no async
/// worker waits on the disk.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, HubError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, HubError> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        HubError::io(
            "hub disk work did not finish",
            std::io::Error::other(e.to_string()),
        )
    })?
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HubError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HubError::io(format!("reading {}", path.display()), e)),
    }
}

fn remove_optional(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(HubError::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, HubError> {
    match read_optional(path)? {
        None => Ok(T::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            HubError::io(
                format!("reading {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), HubError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        HubError::io(
            format!("writing {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let context = || format!("writing {}", path.display());
    let mut temp = NamedTempFile::new_in(dir).map_err(|e| HubError::io(context(), e))?;
    temp.write_all(bytes)
        .map_err(|e| HubError::io(context(), e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| HubError::io(context(), e))?;
    temp.persist(path)
        .map_err(|e| HubError::io(context(), e.error))?;
    Ok(())
}

#[cfg(unix)]
fn set_read_only(path: &Path) -> Result<(), HubError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| HubError::io(format!("making {} read-only", path.display()), e))
}

#[cfg(not(unix))]
fn set_read_only(_path: &Path) -> Result<(), HubError> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_blobs_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Digest::of(b"hello");
        let mut temp = cache.blob_temp().unwrap();
        temp.write_all(b"hello").unwrap();
        let path = cache.commit_blob(temp, &digest, 5).unwrap();
        assert_eq!(cache.verified_blob(&digest, 5).unwrap(), Some(path.clone()));
        assert_eq!(cache.blobs().unwrap().len(), 1);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"jello").unwrap();
        assert_eq!(cache.verified_blob(&digest, 5).unwrap(), None);
        assert!(!path.exists());
    }
}
