//! [`Hub`]: syncing the configured sources into verified indexes, falling back to the last
//! good index in the cache.

use std::fmt;
use std::time::SystemTime;

use super::cache::{SourceState, blocking};
use super::config::ConfiguredSource;
use super::fetch::{Fetcher, Response};
use super::resolve::resolve;
use super::verify::{Verified, check_rollback, verify_bundled, verify_index};
use super::{Cache, Digest, HubConfig, HubError, Index, Reference, Resolved, Source};

/// The agent's view of its hubs.
#[derive(Debug)]
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) cache: Cache,
    pub(crate) fetcher: Fetcher,
    /// The configured sources, parsed once, with the signatures each needs.
    sources: Vec<ConfiguredSource>,
    loaded: Vec<LoadedIndex>,
    /// What the last sync could not load, for errors that would otherwise only say "not found".
    problems: Vec<String>,
}

/// Opens the hub of `config` and syncs every source: the one call the command line and the
/// agent make. Returns the hub and the sync problems (sources that failed or fell back to the
/// cache), to be shown as warnings. When no source gave a usable index, the first source's
/// error is returned: a refusal ([`HubError::is_refusal`]) names the source and why.
pub async fn open_hub(config: HubConfig) -> Result<(Hub, Vec<String>), HubError> {
    // Opening creates the cache directories: disk work.
    let mut hub = blocking(move || Hub::open(config)).await?;
    let report = hub.sync().await;
    let problems = report.problems();
    if report.nothing_loaded() {
        let first = report.sources.into_iter().find_map(|s| match s.outcome {
            SourceOutcome::Failed(e) | SourceOutcome::Stale(e) => Some(e),
            _ => None,
        });
        return Err(first.unwrap_or_else(|| HubError::NotFound {
            reference: "hub index".into(),
            reason: "no configured source gave a usable index".into(),
        }));
    }
    Ok((hub, problems))
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

impl LoadedIndex {
    /// Whether a source other than the bundled hub was accepted without any signature (its
    /// configuration says `required_signatures = 0`): loaded, but not verified.
    pub fn unverified(&self) -> bool {
        !self.source.is_bundled() && self.signatures == 0
    }
}

/// What syncing one source did.
#[derive(Debug)]
pub enum SourceOutcome {
    /// The bundled hub, compiled into the binary: its trust is built in.
    BuiltIn,
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
            SourceOutcome::BuiltIn => f.write_str("built in"),
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
        let sources = config.sources()?;
        let cache = Cache::open(&config.cache_dir())?;
        let fetcher = Fetcher::new(config.timeout(), config.offline)?;
        Ok(Hub {
            config,
            cache,
            fetcher,
            sources,
            loaded: Vec::new(),
            problems: Vec::new(),
        })
    }

    /// Signatures the index of `source` needs: as configured for it; for a source not in the
    /// configuration, the default (at least 1 unless `required_signatures = 0` is set); none
    /// for the bundled hub.
    pub fn required_signatures(&self, source: &Source) -> usize {
        if source.is_bundled() {
            return 0;
        }
        self.sources
            .iter()
            .find(|c| c.source == *source)
            .map_or_else(
                || self.config.default_required_signatures(),
                |c| c.required_signatures,
            )
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
    /// index from the cache. Offline, http sources are read from the cache only. The bundled
    /// hub is read from the binary.
    pub async fn sync(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        self.loaded.clear();
        for configured in self.sources.clone() {
            let source = configured.source;
            let required = configured.required_signatures;
            if source.is_bundled() {
                let (outcome, loaded) = match verify_bundled() {
                    Ok(v) => (SourceOutcome::BuiltIn, Some(loaded(v, &source, false))),
                    Err(e) => (SourceOutcome::Failed(e), None),
                };
                self.record(&mut report, source, outcome, loaded);
                continue;
            }
            let fresh = if self.fetcher.offline() && matches!(source, Source::Http(_)) {
                None
            } else {
                Some(self.sync_source(&source).await)
            };
            let (outcome, loaded) = match fresh {
                Some(Ok((loaded, true))) => (SourceOutcome::Updated, Some(loaded)),
                Some(Ok((loaded, false))) => (SourceOutcome::Current, Some(loaded)),
                None => match self.load_cached_async(&source, required).await {
                    Ok(loaded) => (SourceOutcome::Cached, Some(loaded)),
                    Err(e) => (SourceOutcome::Failed(e), None),
                },
                Some(Err(error)) => match self.load_cached_async(&source, required).await {
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
            self.record(&mut report, source, outcome, loaded);
        }
        self.problems = report.problems();
        report
    }

    fn record(
        &mut self,
        report: &mut SyncReport,
        source: Source,
        outcome: SourceOutcome,
        loaded: Option<LoadedIndex>,
    ) {
        report.sources.push(SourceReport {
            source,
            outcome,
            loaded: loaded
                .as_ref()
                .map(|l| (l.index.hub.id.clone(), l.index.serial)),
        });
        self.loaded.extend(loaded);
    }

    /// Fetches and verifies the index from `source`, without falling back to the cache;
    /// caches it when accepted. Returns the index and whether it is newer than any seen.
    /// The bundled hub is read from the binary and never cached.
    pub async fn sync_source(&self, source: &Source) -> Result<(LoadedIndex, bool), HubError> {
        if source.is_bundled() {
            return verify_bundled().map(|v| (loaded(v, source, false), false));
        }
        let required = self.required_signatures(source);
        let key = source.key();
        let (state, cached) = {
            let (cache, key) = (self.cache.clone(), key.clone());
            blocking(move || {
                let state = cache.source_state(&key)?;
                let cached = match &state.hub_id {
                    Some(hub_id) => cache.cached_index(hub_id)?,
                    None => None,
                };
                Ok((state, cached))
            })
            .await?
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
            Some(Response::NotModified) => match &cached {
                Some((bytes, _)) => (bytes.clone(), state.index_etag.clone()),
                None => {
                    return Err(HubError::Fetch {
                        url: location.to_string(),
                        reason: "HTTP 304 without a cached copy".into(),
                    });
                }
            },
            Some(Response::Body { bytes, etag }) => (bytes, etag),
        };
        // The signature file is small: always fetched, so added signatures and key rotations
        // take effect even when the index itself is unchanged.
        let sig = match self
            .fetcher
            .get(&source.signature(), None, 1024 * 1024)
            .await?
        {
            Some(Response::Body { bytes, .. }) => Some(bytes),
            _ => None,
        };
        // Verifying (signatures, schema) and recording it (fsync) are kept off async workers.
        let (cache, config, origin) = (self.cache.clone(), self.config.clone(), source.to_string());
        let (verified, newer) = blocking(move || {
            let verified = verify_index(
                &bytes,
                sig.as_deref(),
                &origin,
                &config,
                required,
                SystemTime::now(),
            )?;
            let hub_id = verified.index.hub.id.clone();
            let newer = check_rollback(&cache.hub_state(&hub_id)?, &verified)?;
            cache.store_index(&hub_id, &bytes, sig.as_deref())?;
            if newer {
                cache.set_hub_state(
                    &hub_id,
                    &super::cache::HubState {
                        highest_serial: verified.index.serial,
                        digest: Some(verified.digest),
                    },
                )?;
            }
            cache.set_source_state(
                &key,
                &SourceState {
                    hub_id: Some(hub_id),
                    index_digest: Some(verified.digest),
                    index_etag: new_etag,
                },
            )?;
            Ok((verified, newer))
        })
        .await?;
        Ok((loaded(verified, source, false), newer))
    }

    /// The last good index of `source` from the cache, verified again (signatures with the
    /// current keys and threshold, expiry, rollback). Reads the disk: from async code, the hub
    /// calls it on the blocking pool. The bundled hub is read from the binary.
    pub fn load_cached(&self, source: &Source) -> Result<LoadedIndex, HubError> {
        load_cached(
            &self.cache,
            &self.config,
            source,
            self.required_signatures(source),
        )
    }

    async fn load_cached_async(
        &self,
        source: &Source,
        required: usize,
    ) -> Result<LoadedIndex, HubError> {
        let (cache, config, source) = (self.cache.clone(), self.config.clone(), source.clone());
        blocking(move || load_cached(&cache, &config, &source, required)).await
    }

    /// Resolves a reference (`name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`) over the
    /// loaded indexes: pins first, then the newest non-yanked match; curation and the
    /// capability ceiling apply.
    pub fn resolve(&self, reference: &str) -> Result<Resolved, HubError> {
        let reference: Reference = reference.parse()?;
        resolve(&self.loaded, &self.config, &reference).map_err(|e| match e {
            // "Not found" alone would hide that a hub holding it was refused.
            HubError::NotFound { reference, reason } if !self.problems.is_empty() => {
                HubError::NotFound {
                    reference,
                    reason: format!("{reason}; not loaded: {}", self.problems.join("; ")),
                }
            }
            other => other,
        })
    }
}

fn load_cached(
    cache: &Cache,
    config: &HubConfig,
    source: &Source,
    required: usize,
) -> Result<LoadedIndex, HubError> {
    if source.is_bundled() {
        return verify_bundled().map(|v| loaded(v, source, false));
    }
    let not_cached = || HubError::NotCached {
        what: format!("index of {source}"),
    };
    let state = cache.source_state(&source.key())?;
    let hub_id = state.hub_id.ok_or_else(not_cached)?;
    let (bytes, sig) = cache.cached_index(&hub_id)?.ok_or_else(not_cached)?;
    let origin = cache.index_path(&hub_id).display().to_string();
    let verified = verify_index(
        &bytes,
        sig.as_deref(),
        &origin,
        config,
        required,
        SystemTime::now(),
    )?;
    check_rollback(&cache.hub_state(&hub_id)?, &verified)?;
    Ok(loaded(verified, source, true))
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
