//! Pulling a resolved release into the content-addressed cache, and fetching its bytes.

use std::path::PathBuf;

use super::cache::blocking;
use super::curate::check_imports;
use super::source::Location;
use super::{ComponentImports, Digest, Hub, HubError, Kind, Resolved};
use crate::policy::Identity;

/// A component's bytes, read from the verified cache, and where they came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The component, hashed again after reading: these are the bytes the index declares.
    pub bytes: Vec<u8>,
    /// Its provenance: the hub id, package name and version of a verified index, and its
    /// digest. Grants are matched against this, never against what the component says.
    pub identity: Identity,
    /// The resolver's warnings (yanked but pinned, deprecated).
    pub warnings: Vec<String>,
    /// Fault or probe, as the index declares.
    pub kind: Kind,
}

/// A component in the cache whose size, digest and imports were checked.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The blob in the cache; read-only, named by its digest.
    pub path: PathBuf,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The id of the hub whose verified index lists it.
    pub hub: String,
    /// The package name.
    pub name: String,
    /// The release version.
    pub version: semver::Version,
    /// Fault or probe.
    pub kind: Kind,
    /// Whether it was already in the cache.
    pub from_cache: bool,
    /// The resolver's warnings (yanked but pinned, deprecated).
    pub warnings: Vec<String>,
}

impl Hub {
    /// Resolves `reference` (`name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`), pulls it into
    /// the cache like [`Hub::pull`], and reads its bytes back (bounded by
    /// `max_component_bytes`, digest checked again after reading).
    pub async fn fetch_component(
        &self,
        reference: &str,
        imports: &dyn ComponentImports,
    ) -> Result<Fetched, HubError> {
        let resolved = self.resolve(reference)?;
        let (pulled, bytes) = self.pull_bytes(&resolved, imports).await?;
        Ok(Fetched {
            bytes,
            identity: Identity::from_hub(
                &pulled.hub,
                &pulled.name,
                pulled.version.clone(),
                &pulled.digest.to_string(),
            ),
            warnings: pulled.warnings,
            kind: pulled.kind,
        })
    }

    /// Brings the resolved release into the cache (or finds it there), checks its size and
    /// digest, and checks through `imports` that it imports nothing beyond its declared
    /// capabilities. URLs are tried in order; a URL that escapes the hub refuses the release.
    /// A release larger than `max_component_bytes` is refused before anything is fetched.
    pub async fn pull(
        &self,
        resolved: &Resolved,
        imports: &dyn ComponentImports,
    ) -> Result<Pulled, HubError> {
        self.pull_bytes(resolved, imports).await.map(|(p, _)| p)
    }

    async fn pull_bytes(
        &self,
        resolved: &Resolved,
        imports: &dyn ComponentImports,
    ) -> Result<(Pulled, Vec<u8>), HubError> {
        let release = &resolved.release;
        let name = &resolved.package.name;
        let version = release.version.to_string();
        let what = format!("{name}@{version}");
        let limit = self.config.max_component_bytes;
        if release.size > limit {
            return Err(HubError::TooLarge {
                url: format!("{what} ({} bytes in the index)", release.size),
                limit,
            });
        }
        let locations = release
            .urls
            .iter()
            .map(|url| resolved.source.artifact(url, name, &version))
            .collect::<Result<Vec<_>, _>>()?;

        let (digest, size) = (release.digest, release.size);
        let cache = self.cache.clone();
        let cached = blocking(move || cache.verified_blob(&digest, size)).await?;
        let from_cache = cached.is_some();
        let path = match cached {
            Some(path) => path,
            None => self.download(&locations, resolved, &what).await?,
        };
        let cache = self.cache.clone();
        let bytes = blocking(move || cache.read_blob(&digest, limit)).await?;
        let imported = imports
            .imported_interfaces(&bytes)
            .map_err(|e| HubError::Inspect {
                package: name.clone(),
                version: version.clone(),
                reason: format!("{e:#}"),
            })?;
        check_imports(name, release, &imported)?;
        let pulled = Pulled {
            path,
            digest: release.digest,
            size: release.size,
            hub: resolved.hub.clone(),
            name: name.clone(),
            version: release.version.clone(),
            kind: resolved.package.kind,
            from_cache,
            warnings: resolved.warnings.clone(),
        };
        Ok((pulled, bytes))
    }

    /// Tries each location until one yields the declared bytes. When all fail, the first
    /// integrity refusal is reported (it matters more than a mirror being down).
    async fn download(
        &self,
        locations: &[Location],
        resolved: &Resolved,
        what: &str,
    ) -> Result<PathBuf, HubError> {
        let release = &resolved.release;
        let mut refusal = None;
        let mut failure = None;
        for location in locations {
            if self.fetcher.offline() && matches!(location, Location::Http(_)) {
                failure.get_or_insert(HubError::NotCached {
                    what: format!("{what} ({location})"),
                });
                continue;
            }
            let cache = self.cache.clone();
            let temp = blocking(move || cache.blob_temp()).await?;
            let writer = temp
                .as_file()
                .try_clone()
                .map_err(|e| HubError::io(format!("opening the download of {what}"), e))?;
            let mut writer = tokio::fs::File::from_std(writer);
            let result = self
                .fetcher
                .download(location, &mut writer, release.size, what)
                .await
                .and_then(|(digest, size)| {
                    if size != release.size {
                        Err(HubError::SizeMismatch {
                            what: format!("{what} from {location}"),
                            expected: release.size,
                            actual: size,
                        })
                    } else if digest != release.digest {
                        Err(HubError::DigestMismatch {
                            what: format!("{what} from {location}"),
                            expected: release.digest.to_string(),
                            actual: digest.to_string(),
                        })
                    } else {
                        Ok(())
                    }
                });
            match result {
                Ok(()) => {
                    drop(writer);
                    let (cache, digest, size) = (self.cache.clone(), release.digest, release.size);
                    return blocking(move || cache.commit_blob(temp, &digest, size)).await;
                }
                Err(e) if e.is_refusal() => {
                    refusal.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        Err(refusal.or(failure).unwrap_or_else(|| HubError::NotFound {
            reference: what.to_string(),
            reason: "the release lists no URLs".into(),
        }))
    }
}
