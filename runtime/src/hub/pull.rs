//! Pulling a resolved release into the content-addressed cache.

use std::path::PathBuf;

use super::curate::check_imports;
use super::source::Location;
use super::{ComponentImports, Digest, Hub, HubError, Kind, Resolved};

/// A component in the cache whose size, digest and imports were checked.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The blob in the cache; read-only, named by its digest.
    pub path: PathBuf,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
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
    /// Brings the resolved release into the cache (or finds it there), checks its size and
    /// digest, and checks through `imports` that it imports nothing beyond its declared
    /// capabilities. URLs are tried in order; a URL that escapes the hub refuses the release.
    pub async fn pull(
        &self,
        resolved: &Resolved,
        imports: &dyn ComponentImports,
    ) -> Result<Pulled, HubError> {
        let release = &resolved.release;
        let name = &resolved.package.name;
        let version = release.version.to_string();
        let what = format!("{name}@{version}");
        let locations = release
            .urls
            .iter()
            .map(|url| resolved.source.artifact(url, name, &version))
            .collect::<Result<Vec<_>, _>>()?;

        let cached = self.cache.verified_blob(&release.digest, release.size)?;
        let from_cache = cached.is_some();
        let path = match cached {
            Some(path) => path,
            None => self.download(&locations, resolved, &what).await?,
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
        let imported = imports
            .imported_interfaces(&bytes)
            .map_err(|e| HubError::Inspect {
                package: name.clone(),
                version: version.clone(),
                reason: format!("{e:#}"),
            })?;
        check_imports(name, release, &imported)?;
        Ok(Pulled {
            path,
            digest: release.digest,
            size: release.size,
            name: name.clone(),
            version: release.version.clone(),
            kind: resolved.package.kind,
            from_cache,
            warnings: resolved.warnings.clone(),
        })
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
            let mut temp = self.cache.blob_temp()?;
            let result = self
                .fetcher
                .download(location, temp.as_file_mut(), release.size, what)
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
                Ok(()) => return self.cache.commit_blob(temp, &release.digest, release.size),
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
