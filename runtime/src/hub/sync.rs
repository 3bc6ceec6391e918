//! [`Hub`]: syncing the configured sources into verified indexes, falling back to the last
//! good index in the cache.

use std::fmt;
use std::time::SystemTime;

use super::cache::SourceState;
use super::fetch::{Fetched, Fetcher};
use super::resolve::resolve;
use super::verify::{Verified, check_rollback, verify_index};
use super::{Cache, Digest, HubConfig, HubError, Index, Reference, Resolved, Source};

/// The agent's view of its hubs.
#[derive(Debug)]
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) cache: Cache,
    pub(crate) fetcher: Fetcher,
    loaded: Vec<LoadedIndex>,
}

/// A verified index in use.
#[derive(Debug, Clone)]
pub struct LoadedIndex {
    /// The index.
    pub index: Index,
    /// Where it was configured to come from.
    pub source: Source,
    /// The digest of its exact bytes.
    pub digest: Digest,
    /// Valid signatures from distinct trusted keys.
    pub signatures: usize,
    /// Whether it is the cached copy rather than what the source just served.
    pub from_cache: bool,
}

/// What syncing one source did.
#[derive(Debug)]
pub enum SourceOutcome {
    /// The source served a newer index, now verified and cached.
    Updated,
    /// The source served the index already cached (HTTP 304, or the same bytes).
    Current,
    /// Offline: the cached index was used without contacting the source.
    Cached,
    /// The source failed or was refused; the last good index from the cache is in use.
    Stale(HubError),
    /// The source failed or was refused and no usable cached index exists.
    Failed(HubError),
}

/// What syncing one source did, with the index in use if any.
#[derive(Debug)]
pub struct SourceReport {
    /// The source.
    pub source: Source,
    /// The outcome.
    pub outcome: SourceOutcome,
    /// The hub id and serial in use for this source, if any.
    pub loaded: Option<(String, u64)>,
}

/// What [`Hub::sync`] did, source by source.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// One report per configured source, in priority order.
    pub sources: Vec<SourceReport>,
}

impl SyncReport {
    /// A sentence per source that failed or fell back to the cache.
    pub fn problems(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| match &s.outcome {
                SourceOutcome::Stale(e) => Some(format!(
                    "{}: {e}; using the last good index (serial {})",
                    s.source,
                    s.loaded.as_ref().map_or(0, |(_, serial)| *serial)
                )),
                SourceOutcome::Failed(e) => Some(format!("{}: {e}", s.source)),
                _ => None,
            })
            .collect()
    }

    /// Whether no source gave a usable index.
    pub fn nothing_loaded(&self) -> bool {
        self.sources.iter().all(|s| s.loaded.is_none())
    }
}

impl fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceOutcome::Updated => f.write_str("updated"),
            SourceOutcome::Current => f.write_str("current"),
            SourceOutcome::Cached => f.write_str("cached (offline)"),
            SourceOutcome::Stale(e) => write!(f, "stale: {e}"),
            SourceOutcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl Hub {
    /// A hub with `config`: validates it and opens the cache. Nothing is loaded until
    /// [`Hub::sync`] or [`Hub::load_cached`].
    pub fn open(config: HubConfig) -> Result<Self, HubError> {
        config.validate()?;
        let cache = Cache::open(&config.cache_dir())?;
        let fetcher = Fetcher::new(config.timeout(), config.offline)?;
        Ok(Hub {
            config,
            cache,
            fetcher,
            loaded: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The indexes in use, in source priority order.
    pub fn indexes(&self) -> &[LoadedIndex] {
        &self.loaded
    }

    /// Syncs every configured source; a source that fails or is refused keeps its last good
    /// index from the cache. Offline, http sources are read from the cache only.
    pub async fn sync(&mut self) -> SyncReport {
        let sources = match self.config.sources() {
            Ok(s) => s,
            Err(e) => {
                return SyncReport {
                    sources: vec![SourceReport {
                        source: Source::Path(Default::default()),
                        outcome: SourceOutcome::Failed(e),
                        loaded: None,
                    }],
                };
            }
        };
        let mut report = SyncReport::default();
        self.loaded.clear();
        for source in sources {
            let fresh = if self.fetcher.offline() && matches!(source, Source::Http(_)) {
                None
            } else {
                Some(self.sync_source(&source).await)
            };
            let (outcome, loaded) = match fresh {
                Some(Ok((loaded, true))) => (SourceOutcome::Updated, Some(loaded)),
                Some(Ok((loaded, false))) => (SourceOutcome::Current, Some(loaded)),
                None => match self.load_cached(&source) {
                    Ok(loaded) => (SourceOutcome::Cached, Some(loaded)),
                    Err(e) => (SourceOutcome::Failed(e), None),
                },
                Some(Err(error)) => match self.load_cached(&source) {
                    Ok(loaded) => (SourceOutcome::Stale(error), Some(loaded)),
                    Err(HubError::NotCached { .. }) => (SourceOutcome::Failed(error), None),
                    // A transport failure makes the cache's problem (say, expiry) the one
                    // that matters; a refusal of what the source served stays the headline.
                    Err(cached_error) if matches!(error, HubError::Fetch { .. }) => {
                        (SourceOutcome::Failed(cached_error), None)
                    }
                    Err(_) => (SourceOutcome::Failed(error), None),
                },
            };
            report.sources.push(SourceReport {
                source,
                outcome,
                loaded: loaded
                    .as_ref()
                    .map(|l| (l.index.hub.id.clone(), l.index.serial)),
            });
            self.loaded.extend(loaded);
        }
        report
    }

    /// Fetches and verifies the index from `source`, without falling back to the cache;
    /// caches it when accepted. Returns the index and whether it is newer than any seen.
    pub async fn sync_source(&self, source: &Source) -> Result<(LoadedIndex, bool), HubError> {
        let key = source.key();
        let state = self.cache.source_state(&key)?;
        let cached = match &state.hub_id {
            Some(hub_id) => self.cache.cached_index(hub_id)?,
            None => None,
        };
        // Revalidate only if the cached index is the one this source served last.
        let etag = match (&cached, &state.index_digest) {
            (Some((bytes, _)), Some(digest)) if Digest::of(bytes) == *digest => {
                state.index_etag.as_deref()
            }
            _ => None,
        };
        let location = source.index();
        let limit = self.config.max_index_bytes;
        let (bytes, new_etag) = match self.fetcher.get(&location, etag, limit).await? {
            None => {
                return Err(HubError::Fetch {
                    url: location.to_string(),
                    reason: "not found".into(),
                });
            }
            Some(Fetched::NotModified) => match &cached {
                Some((bytes, _)) => (bytes.clone(), state.index_etag.clone()),
                None => {
                    return Err(HubError::Fetch {
                        url: location.to_string(),
                        reason: "HTTP 304 without a cached copy".into(),
                    });
                }
            },
            Some(Fetched::Body { bytes, etag }) => (bytes, etag),
        };
        // The signature file is small: always fetched, so added signatures and key rotations
        // take effect even when the index itself is unchanged.
        let sig = match self
            .fetcher
            .get(&source.signature(), None, 1024 * 1024)
            .await?
        {
            Some(Fetched::Body { bytes, .. }) => Some(bytes),
            _ => None,
        };
        let verified = verify_index(
            &bytes,
            sig.as_deref(),
            &source.to_string(),
            &self.config,
            SystemTime::now(),
        )?;
        let hub_id = verified.index.hub.id.clone();
        let newer = check_rollback(&self.cache.hub_state(&hub_id)?, &verified)?;
        self.cache.store_index(&hub_id, &bytes, sig.as_deref())?;
        if newer {
            self.cache.set_hub_state(
                &hub_id,
                &super::cache::HubState {
                    highest_serial: verified.index.serial,
                    digest: Some(verified.digest),
                },
            )?;
        }
        self.cache.set_source_state(
            &key,
            &SourceState {
                hub_id: Some(hub_id),
                index_digest: Some(verified.digest),
                index_etag: new_etag,
            },
        )?;
        Ok((loaded(verified, source, false), newer))
    }

    /// The last good index of `source` from the cache, verified again (signatures with the
    /// current keys, expiry, rollback).
    pub fn load_cached(&self, source: &Source) -> Result<LoadedIndex, HubError> {
        let not_cached = || HubError::NotCached {
            what: format!("index of {source}"),
        };
        let state = self.cache.source_state(&source.key())?;
        let hub_id = state.hub_id.ok_or_else(not_cached)?;
        let (bytes, sig) = self.cache.cached_index(&hub_id)?.ok_or_else(not_cached)?;
        let origin = self.cache.index_path(&hub_id).display().to_string();
        let verified = verify_index(
            &bytes,
            sig.as_deref(),
            &origin,
            &self.config,
            SystemTime::now(),
        )?;
        check_rollback(&self.cache.hub_state(&hub_id)?, &verified)?;
        Ok(loaded(verified, source, true))
    }

    /// Resolves a reference (`name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`) over the
    /// loaded indexes: pins first, then the newest non-yanked match; curation and the
    /// capability ceiling apply.
    pub fn resolve(&self, reference: &str) -> Result<Resolved, HubError> {
        let reference: Reference = reference.parse()?;
        resolve(&self.loaded, &self.config, &reference)
    }
}

fn loaded(verified: Verified, source: &Source, from_cache: bool) -> LoadedIndex {
    LoadedIndex {
        index: verified.index,
        source: source.clone(),
        digest: verified.digest,
        signatures: verified.signatures,
        from_cache,
    }
}
