//! On-disk cache of compiled components, keyed by the component's sha256 and the engine's
//! compatibility hash, so a warm load skips Cranelift entirely.
//!
//! A compiled artefact is native code that wasmtime runs without checking it, so the cache
//! trusts nothing it did not check itself:
//!
//! - [`CompileCache::new`] refuses a cache directory (and a parent that is ours) that is a
//!   symbolic link, not owned by the agent's effective uid, or writable by group or others;
//! - [`CompileCache::load`] opens an artefact without following symbolic links, checks from
//!   the open file that it is a regular file owned by us, not writable by group or others and
//!   at most [`MAX_ARTEFACT_BYTES`] long, reads it once and hashes those bytes; it
//!   deserialises those very bytes only when their sha256 and the component's digest match the
//!   record (`<artefact>.sha256`) written when the artefact was stored. Anything else is
//!   discarded with a warning naming why, and the component is compiled again.
//!
//! [`CompileCache::load`] compiles with Cranelift and reads files: call it from
//! `tokio::task::spawn_blocking`, or use [`CompileCache::load_async`], which does.

#![allow(unsafe_code)]

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::fs::{File, Metadata};
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The largest artefact the cache reads; a bigger file is discarded unread.
pub const MAX_ARTEFACT_BYTES: u64 = 256 << 20;

/// The largest record (`<artefact>.sha256`) the cache reads.
const MAX_RECORD_BYTES: u64 = 4 << 10;

/// Suffix of the record kept beside each artefact.
const RECORD_SUFFIX: &str = ".sha256";

/// The cache directory (or its parent) is not safe to load native code from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing the compile cache: {problem} (owner uid {owner}, mode {mode:04o}); fix: {fix}")]
pub struct UnsafeCacheDir {
    /// The directory found unsafe (the cache directory or its parent).
    pub dir: PathBuf,
    /// What is wrong with it, naming it.
    pub problem: String,
    /// Its owner's uid.
    pub owner: u32,
    /// Its permission bits (with the sticky bit).
    pub mode: u32,
    /// What to run to make it safe.
    pub fix: String,
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` (created with mode 0700 when missing) for this engine's configuration.
    /// Fails with an [`UnsafeCacheDir`] when the directory, or its parent when that is ours,
    /// is a symbolic link, not ours or writable by group or others.
    pub fn new(dir: &Path, engine: &Engine) -> Result<CompileCache> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to create cache directory {}", dir.display()))?;
        check_dir(dir, true)?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        check_dir(parent, false)?;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", h.finish()),
        })
    }

    /// Where the artefact for a component with this digest lives.
    pub fn artefact_path(&self, digest_hex: &str) -> PathBuf {
        self.dir
            .join(format!("{digest_hex}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for these bytes: from the cache when a checked artefact is
    /// there, else compiled and stored. Returns whether it was a cache hit.
    ///
    /// Blocking (file IO and Cranelift): call it from `spawn_blocking`, or use
    /// [`CompileCache::load_async`].
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<(Component, bool)> {
        let path = self.artefact_path(digest_hex);
        match read_checked(&path, digest_hex) {
            Ok(None) => {}
            Ok(Some(artefact)) => {
                // SAFETY: these bytes are the ones just read from a regular file that we own,
                // that no one else may write, in a directory only we may write, and their
                // sha256 matches the one `store` recorded when it wrote the output of
                // `Component::serialize` for this very component digest and engine
                // configuration (the file name carries the compatibility hash); wasmtime
                // still checks the header. They are not read again after the check.
                match unsafe { Component::deserialize(engine, &artefact) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => discard(&path, &format!("wasmtime refused it: {e:#}")),
                }
            }
            Err(why) => discard(&path, &why),
        }
        let component =
            Component::from_binary(engine, bytes).map_err(crate::host::anyhow_of_wasmtime)?;
        if let Err(e) = self.store(&component, &path, digest_hex) {
            tracing::warn!("could not cache compiled component: {e:#}");
        }
        Ok((component, false))
    }

    /// [`CompileCache::load`] on a blocking thread, for async callers.
    pub async fn load_async(
        &self,
        engine: &Engine,
        bytes: Vec<u8>,
        digest_hex: String,
    ) -> Result<(Component, bool)> {
        let (cache, engine) = (self.clone(), engine.clone());
        tokio::task::spawn_blocking(move || cache.load(&engine, &bytes, &digest_hex))
            .await
            .context("the compile task failed")?
    }

    /// Writes the artefact, then its record, each through a 0600 temporary file renamed into
    /// place, so a reader sees either a whole file or none.
    fn store(&self, component: &Component, path: &Path, digest_hex: &str) -> Result<()> {
        let bytes = component
            .serialize()
            .map_err(crate::host::anyhow_of_wasmtime)?;
        let record = format!(
            "component {digest_hex}\nartefact {}\n",
            hex::encode(Sha256::digest(&bytes))
        );
        self.write_file(path, &bytes)?;
        self.write_file(&record_path(path), record.as_bytes())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        // `NamedTempFile` creates its file with O_EXCL and mode 0600; the rename replaces
        // whatever is at `path` (a symbolic link included) instead of writing through it.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("failed to create a file in {}", self.dir.display()))?;
        tmp.as_file_mut()
            .write_all(bytes)
            .with_context(|| format!("failed to write {}", tmp.path().display()))?;
        tmp.persist(path)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(())
    }
}

/// The record kept beside an artefact.
fn record_path(artefact: &Path) -> PathBuf {
    let mut p = artefact.as_os_str().to_os_string();
    p.push(RECORD_SUFFIX);
    PathBuf::from(p)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Checks a directory the cache loads from. `own` is the cache directory itself; its parent
/// (`own == false`) is held to the same rules when it is ours, and otherwise only must not let
/// others replace the cache directory: writable by group or others only with the sticky bit
/// (as /tmp), and a symbolic link only when root owns it.
fn check_dir(dir: &Path, own: bool) -> Result<()> {
    let read = |follow: bool| {
        if follow {
            std::fs::metadata(dir)
        } else {
            std::fs::symlink_metadata(dir)
        }
        .with_context(|| format!("failed to read the metadata of {}", dir.display()))
    };
    let mut meta = read(false)?;
    let me = euid();
    let theirs = !own && meta.uid() != me;
    if theirs && meta.file_type().is_symlink() && meta.uid() == 0 {
        meta = read(true)?;
    }
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let d = dir.display();
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    let what = if own {
        ""
    } else {
        " (the parent of the cache directory)"
    };
    let (problem, fix) = if meta.file_type().is_symlink() {
        (
            "is a symbolic link".to_string(),
            format!("point the state or cache directory at the real directory instead of {d}"),
        )
    } else if !meta.is_dir() {
        (
            "is not a directory".to_string(),
            format!("remove {d} or choose another cache directory"),
        )
    } else if theirs {
        if !writable_by_others || sticky {
            return Ok(());
        }
        (
            "is writable by group or others, who could replace the cache directory".to_string(),
            format!("chmod go-w {d}"),
        )
    } else if owner != me {
        (
            format!("is not owned by this agent's user (uid {me})"),
            format!("chown {me} {d}"),
        )
    } else if writable_by_others && (own || !sticky) {
        // A sticky parent (like /tmp) is fine: others may not rename or remove what is ours.
        (
            "is writable by group or others".to_string(),
            format!("chmod 700 {d}"),
        )
    } else {
        return Ok(());
    };
    Err(UnsafeCacheDir {
        dir: dir.to_path_buf(),
        problem: format!("{d}{what} {problem}"),
        owner,
        mode,
        fix,
    }
    .into())
}

/// Reads a file of the cache once, without following a symbolic link, after checking from the
/// open file that it may be trusted. `None` when there is no such file; `Err` says why the
/// file must not be used.
fn read_file_checked(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        // No symlink followed; O_NONBLOCK so that a FIFO put there cannot hang the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("it is a symbolic link".into());
        }
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("it cannot be examined: {e}"))?;
    check_file(&meta, limit)?;
    read_bounded(file, limit).map(Some)
}

fn check_file(meta: &Metadata, limit: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let me = euid();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this agent's user (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {mode:04o})"
        ));
    }
    if meta.len() > limit {
        return Err(format!(
            "it is {} bytes, more than the {limit} allowed",
            meta.len()
        ));
    }
    Ok(())
}

fn read_bounded(file: File, limit: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew since `fstat` from one that fits.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("it cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is more than the {limit} bytes allowed"));
    }
    Ok(bytes)
}

/// The artefact's bytes when it and its record pass every check, `None` when there is none.
fn read_checked(path: &Path, digest_hex: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(artefact) = read_file_checked(path, MAX_ARTEFACT_BYTES)? else {
        return Ok(None);
    };
    let record_at = record_path(path);
    let record = match read_file_checked(&record_at, MAX_RECORD_BYTES) {
        Ok(Some(r)) => r,
        Ok(None) => return Err("it has no record of its sha256".into()),
        Err(why) => return Err(format!("its record {}: {why}", record_at.display())),
    };
    let record = String::from_utf8_lossy(&record);
    let field = |name: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
    };
    if field("component") != Some(digest_hex) {
        return Err(format!(
            "its record is for another component ({})",
            field("component").unwrap_or("none")
        ));
    }
    let actual = hex::encode(Sha256::digest(&artefact));
    match field("artefact") {
        Some(recorded) if recorded == actual => Ok(Some(artefact)),
        recorded => Err(format!(
            "its sha256 is {actual}, but {} was recorded when it was stored",
            recorded.unwrap_or("none")
        )),
    }
}

/// Removes an artefact that failed a check (and its record), saying why.
fn discard(path: &Path, why: &str) {
    tracing::warn!(
        "discarding compile cache entry {}: {why}; compiling again",
        path.display()
    );
    for p in [path.to_path_buf(), record_path(path)] {
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A component importing one function named `name`: small, quick to compile, and telling
    /// which component was loaded.
    fn component(name: &str) -> Vec<u8> {
        wat::parse_str(format!(r#"(component (import "{name}" (func)))"#)).unwrap()
    }

    fn imports(engine: &Engine, c: &Component) -> Vec<String> {
        c.component_type()
            .imports(engine)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn setup() -> (tempfile::TempDir, Engine, CompileCache) {
        let d = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::new(&d.path().join("cache"), &engine).unwrap();
        (d, engine, cache)
    }

    #[test]
    fn a_stored_artefact_is_served_from_the_cache() {
        let (_d, engine, cache) = setup();
        let a = component("a");
        let (_, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(!hit);
        let (c, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(hit);
        assert_eq!(imports(&engine, &c), ["a"]);
        let path = cache.artefact_path(&digest(&a));
        for p in [path.clone(), record_path(&path)] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    #[test]
    fn a_swapped_artefact_is_discarded_and_recompiled() {
        let (_d, engine, cache) = setup();
        let (a, b) = (component("a"), component("b"));
        cache.load(&engine, &a, &digest(&a)).unwrap();
        cache.load(&engine, &b, &digest(&b)).unwrap();
        // A hostile swap: b's real, loadable artefact under a's name.
        let (pa, pb) = (
            cache.artefact_path(&digest(&a)),
            cache.artefact_path(&digest(&b)),
        );
        std::fs::copy(&pb, &pa).unwrap();
        let (c, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(!hit, "a swapped artefact was served");
        assert_eq!(imports(&engine, &c), ["a"]);
        // The swapped file was replaced by a's own artefact, which is served again.
        let (c, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(hit);
        assert_eq!(imports(&engine, &c), ["a"]);
    }

    #[test]
    fn an_artefact_with_its_record_copied_from_another_component_is_discarded() {
        let (_d, engine, cache) = setup();
        let (a, b) = (component("a"), component("b"));
        cache.load(&engine, &a, &digest(&a)).unwrap();
        cache.load(&engine, &b, &digest(&b)).unwrap();
        let (pa, pb) = (
            cache.artefact_path(&digest(&a)),
            cache.artefact_path(&digest(&b)),
        );
        std::fs::copy(&pb, &pa).unwrap();
        std::fs::copy(record_path(&pb), record_path(&pa)).unwrap();
        let e = read_checked(&pa, &digest(&a)).unwrap_err();
        assert!(e.starts_with("its record is for another component"), "{e}");
        let (c, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(!hit);
        assert_eq!(imports(&engine, &c), ["a"]);
    }

    #[test]
    fn a_symlinked_artefact_is_refused() {
        let (d, engine, cache) = setup();
        let a = component("a");
        cache.load(&engine, &a, &digest(&a)).unwrap();
        let path = cache.artefact_path(&digest(&a));
        // The link points at a's own good artefact (its sha256 matches the record), and is
        // still refused: what it points at can change after any check.
        let elsewhere = d.path().join("elsewhere.cwasm");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(
            read_checked(&path, &digest(&a)).unwrap_err(),
            "it is a symbolic link"
        );
        let (_, hit) = cache.load(&engine, &a, &digest(&a)).unwrap();
        assert!(!hit);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    }

    #[test]
    fn an_artefact_others_may_write_or_without_a_record_is_discarded() {
        let (_d, engine, cache) = setup();
        let a = component("a");
        cache.load(&engine, &a, &digest(&a)).unwrap();
        let path = cache.artefact_path(&digest(&a));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_checked(&path, &digest(&a)).unwrap_err();
        assert_eq!(e, "it is writable by group or others (mode 0666)");
        assert!(!cache.load(&engine, &a, &digest(&a)).unwrap().1);

        std::fs::remove_file(record_path(&path)).unwrap();
        let e = read_checked(&path, &digest(&a)).unwrap_err();
        assert_eq!(e, "it has no record of its sha256");
        assert!(!cache.load(&engine, &a, &digest(&a)).unwrap().1);
        assert!(cache.load(&engine, &a, &digest(&a)).unwrap().1);
    }

    #[test]
    fn a_cache_directory_open_to_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = CompileCache::new(&dir, &Engine::default()).unwrap_err();
        let unsafe_dir = e.downcast_ref::<UnsafeCacheDir>().expect("UnsafeCacheDir");
        assert_eq!(unsafe_dir.dir, dir);
        assert_eq!(
            e.to_string(),
            format!(
                "refusing the compile cache: {0} is writable by group or others \
                 (owner uid {1}, mode 0777); fix: chmod 700 {0}",
                dir.display(),
                euid()
            )
        );
    }

    #[test]
    fn a_symlinked_cache_directory_or_open_parent_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("cache");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = CompileCache::new(&link, &Engine::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("{} is a symbolic link", link.display())),
            "{e}"
        );

        let parent = d.path().join("state");
        std::fs::create_dir(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o757)).unwrap();
        let e = CompileCache::new(&parent.join("cache"), &Engine::default()).unwrap_err();
        let unsafe_dir = e.downcast_ref::<UnsafeCacheDir>().expect("UnsafeCacheDir");
        assert_eq!(unsafe_dir.dir, parent);
        assert_eq!(
            unsafe_dir.problem,
            format!(
                "{} (the parent of the cache directory) is writable by group or others",
                parent.display()
            )
        );
        assert!(e.to_string().contains("fix: chmod 700"), "{e}");
    }
}
