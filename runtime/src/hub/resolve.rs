//! Package references and their resolution to one release.

use std::fmt;
use std::str::FromStr;

use semver::{Op, VersionReq};

use super::curate::{check_ceiling, check_name};
use super::{Digest, HubConfig, HubError, LoadedIndex, Package, Release, Source};

/// What a user asks for: `name`, `name@1.2`, `name@^1`, `name@=1.2.3`, or `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A package name with an optional semver requirement (`1.2` means `^1.2`, as in Cargo).
    Name {
        /// The package name.
        name: String,
        /// The requirement; `None` for any version.
        req: Option<VersionReq>,
    },
    /// One exact artefact.
    Digest(Digest),
}

impl Reference {
    /// Whether the reference names exactly one release (`=x.y.z` or a digest): such a
    /// reference may select a yanked release.
    pub fn is_exact(&self) -> bool {
        match self {
            Reference::Digest(_) => true,
            Reference::Name { req: Some(req), .. } => {
                matches!(req.comparators.as_slice(),
                    [c] if c.op == Op::Exact && c.minor.is_some() && c.patch.is_some())
            }
            Reference::Name { req: None, .. } => false,
        }
    }
}

impl FromStr for Reference {
    type Err = HubError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| HubError::BadReference {
            reference: text.to_string(),
            reason,
        };
        if text.starts_with("sha256:") {
            return text.parse().map(Reference::Digest).map_err(bad);
        }
        let (name, req) = match text.split_once('@') {
            Some((name, req)) => (
                name,
                Some(VersionReq::parse(req).map_err(|e| bad(format!("`{req}`: {e}")))?),
            ),
            None => (text, None),
        };
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !valid_name {
            return Err(bad(format!(
                "`{name}` is not a package name (lowercase letters, digits, `.`, `_`, `-`)"
            )));
        }
        Ok(Reference::Name {
            name: name.to_string(),
            req,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Digest(d) => write!(f, "{d}"),
            Reference::Name { name, req: None } => f.write_str(name),
            Reference::Name { name, req: Some(r) } => write!(f, "{name}@{r}"),
        }
    }
}

/// A release chosen for a reference, with where it comes from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The id of the hub it comes from.
    pub hub: String,
    /// The package (with all its releases).
    pub package: Package,
    /// The chosen release.
    pub release: Release,
    /// Things an operator should hear about: yanked but pinned, deprecated.
    pub warnings: Vec<String>,
    /// The index source, against which relative URLs resolve.
    pub(crate) source: Source,
}

/// Resolves `reference` over the loaded indexes, in source priority order: the first hub
/// that has the package name serves it.
pub(crate) fn resolve(
    indexes: &[LoadedIndex],
    config: &HubConfig,
    reference: &Reference,
) -> Result<Resolved, HubError> {
    let not_found = |reason: String| HubError::NotFound {
        reference: reference.to_string(),
        reason,
    };
    let hubs = || {
        let ids: Vec<_> = indexes.iter().map(|l| l.index.hub.id.as_str()).collect();
        if ids.is_empty() {
            "no hub index is loaded".to_string()
        } else {
            format!("hubs searched: {}", ids.join(", "))
        }
    };
    let (loaded, package, release, exact) = match reference {
        Reference::Digest(digest) => {
            let found = indexes.iter().find_map(|l| {
                l.index.packages.iter().find_map(|p| {
                    p.versions
                        .iter()
                        .find(|r| r.digest == *digest)
                        .map(|r| (l, p, r))
                })
            });
            let (l, p, r) = found.ok_or_else(|| not_found(hubs()))?;
            check_name(config, &p.name)?;
            (l, p, r, true)
        }
        Reference::Name { name, req } => {
            check_name(config, name)?;
            let (l, p) = indexes
                .iter()
                .find_map(|l| l.index.package(name).map(|p| (l, p)))
                .ok_or_else(|| not_found(hubs()))?;
            let (release, exact) = choose(p, config, req.as_ref(), reference.is_exact()).map_err(
                |reason| match reason {
                    Choice::Refused(e) => e,
                    Choice::None(reason) => not_found(reason),
                },
            )?;
            (l, p, release, exact)
        }
    };
    check_ceiling(config, &package.name, release)?;
    let mut warnings = Vec::new();
    if let Some(yanked) = &release.yanked {
        if !exact {
            return Err(HubError::Yanked {
                package: package.name.clone(),
                version: release.version.to_string(),
                reason: yanked.reason.clone(),
            });
        }
        warnings.push(format!(
            "{}@{} is yanked ({}); using it because it is pinned exactly",
            package.name, release.version, yanked.reason
        ));
    }
    if let Some(deprecated) = &release.deprecated {
        let instead = deprecated
            .replacement
            .as_ref()
            .map(|r| format!("; use {r} instead"))
            .unwrap_or_default();
        warnings.push(format!(
            "{}@{} is deprecated: {}{instead}",
            package.name, release.version, deprecated.reason
        ));
    }
    Ok(Resolved {
        hub: loaded.index.hub.id.clone(),
        package: package.clone(),
        release: release.clone(),
        warnings,
        source: loaded.source.clone(),
    })
}

enum Choice {
    Refused(HubError),
    None(String),
}

/// Picks the release: the pin if any, else the newest non-yanked match. Returns whether the
/// choice is exact (and so may be yanked).
fn choose<'p>(
    package: &'p Package,
    config: &HubConfig,
    req: Option<&VersionReq>,
    exact_req: bool,
) -> Result<(&'p Release, bool), Choice> {
    let available = || {
        let v: Vec<_> = package
            .versions
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        format!("available: {}", v.join(", "))
    };
    if let Some(pin) = config.pins.get(&package.name) {
        if let Some(req) = req.filter(|r| !r.matches(pin)) {
            return Err(Choice::None(format!(
                "{} is pinned to {pin} in [hub.pins], which does not match {req}",
                package.name
            )));
        }
        return package
            .versions
            .iter()
            .find(|r| r.version == *pin)
            .map(|r| (r, true))
            .ok_or_else(|| {
                Choice::None(format!(
                    "pinned version {pin} is not in the index; {}",
                    available()
                ))
            });
    }
    let req = req.cloned().unwrap_or(VersionReq::STAR);
    let mut matching: Vec<&Release> = package
        .versions
        .iter()
        .filter(|r| req.matches(&r.version))
        .collect();
    matching.sort_by(|a, b| b.version.cmp(&a.version));
    if exact_req && let Some(first) = matching.first() {
        return Ok((first, true));
    }
    if let Some(r) = matching.iter().find(|r| r.yanked.is_none()) {
        return Ok((r, false));
    }
    match matching.first() {
        Some(r) => Err(Choice::Refused(HubError::Yanked {
            package: package.name.clone(),
            version: r.version.to_string(),
            reason: r
                .yanked
                .as_ref()
                .map(|y| y.reason.clone())
                .unwrap_or_default(),
        })),
        None => Err(Choice::None(format!(
            "no version matches {req}; {}",
            available()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r: Reference = "process-pause@=1.2.3".parse().unwrap();
        assert!(r.is_exact());
        let r: Reference = "process-pause@1.2".parse().unwrap();
        assert!(!r.is_exact());
        assert_eq!(r.to_string(), "process-pause@^1.2");
        assert!(!"process-pause".parse::<Reference>().unwrap().is_exact());
        assert!("Bad Name".parse::<Reference>().is_err());
        assert!("x@not-a-req".parse::<Reference>().is_err());
        let d = Digest::of(b"a");
        assert_eq!(
            d.to_string().parse::<Reference>().unwrap(),
            Reference::Digest(d)
        );
    }
}
