//! On-disk cache of compiled components, keyed by the component's sha256 and the engine's
//! compatibility hash, so a warm load skips Cranelift entirely.
//!
//! Only files this agent wrote itself, in its own cache directory, are ever deserialised.

#![allow(unsafe_code)]

use anyhow::{Context as _, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` (created with mode 0700) for this engine's configuration.
    pub fn new(dir: &Path, engine: &Engine) -> Result<CompileCache> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to create cache directory {}", dir.display()))?;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, digest_hex: &str) -> PathBuf {
        self.dir
            .join(format!("{digest_hex}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for these bytes: from the cache when present, else compiled and
    /// stored. Returns whether it was a cache hit.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<(Component, bool)> {
        let path = self.path(digest_hex);
        if path.exists() {
            // SAFETY: the file is in the agent's own 0700 cache directory, written by `store`
            // below from `Component::serialize` of this very engine configuration (the file
            // name carries the compatibility hash); wasmtime still checks its header.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!("discarding unusable cache entry {}: {e:#}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component =
            Component::from_binary(engine, bytes).map_err(crate::host::anyhow_of_wasmtime)?;
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!("could not cache compiled component: {e:#}");
        }
        Ok((component, false))
    }

    fn store(&self, component: &Component, path: &Path) -> Result<()> {
        let bytes = component
            .serialize()
            .map_err(crate::host::anyhow_of_wasmtime)?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::fs::write(tmp.path(), bytes)?;
        tmp.persist(path)?;
        Ok(())
    }
}
