//! Browsing the loaded indexes: the listing and search behind `faultline hub list|search|show`
//! and the agent's `GET /v1/hub/packages`. In memory: no I/O.

use super::{Hub, HubError, Kind, Package, Reference, Resolved};
use serde::Serialize;

/// One package of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The package name.
    pub name: String,
    /// Fault or probe.
    pub kind: Kind,
    /// What `pull <name>` would get here, or why not: `(shadowed)`, `(denied)`,
    /// `(above ceiling)`, `(yanked)`, `-`.
    pub version: String,
    /// The id of the hub whose index lists it.
    pub hub: String,
    /// One line on what it does.
    pub description: String,
    /// Its categories.
    pub categories: Vec<String>,
}

/// The packages of every loaded index, in source priority order, keeping those whose name,
/// description or categories contain every word of `query` (case-insensitive) and, with
/// `kind`, only that kind.
pub fn list(hub: &Hub, query: Option<&str>, kind: Option<Kind>) -> Vec<Listed> {
    let words: Vec<String> = query
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for loaded in hub.indexes() {
        for package in &loaded.index.packages {
            if kind.is_some_and(|k| k != package.kind) || !words.iter().all(|w| matches(package, w))
            {
                continue;
            }
            // Shows what `pull <name>` would get, or why not.
            let version = match hub.resolve(&package.name) {
                Ok(r) if r.hub == loaded.index.hub.id => r.release.version.to_string(),
                Ok(_) => "(shadowed)".into(),
                Err(HubError::Denied { .. }) => "(denied)".into(),
                Err(HubError::AboveCeiling { .. }) => "(above ceiling)".into(),
                Err(HubError::Yanked { .. }) => "(yanked)".into(),
                Err(_) => "-".into(),
            };
            rows.push(Listed {
                name: package.name.clone(),
                kind: package.kind,
                version,
                hub: loaded.index.hub.id.clone(),
                description: package.description.clone(),
                categories: package.categories.clone(),
            });
        }
    }
    rows
}

fn matches(package: &Package, word: &str) -> bool {
    package.name.to_lowercase().contains(word)
        || package.description.to_lowercase().contains(word)
        || package
            .categories
            .iter()
            .any(|c| c.to_lowercase().contains(word))
}

/// The package `reference` names and what it resolves to: the package even when resolving
/// fails (a denied or yanked name still shows its releases). An error when the reference
/// does not parse, or when no index has the package at all.
pub fn show(hub: &Hub, reference: &str) -> Result<(Package, Result<Resolved, HubError>), HubError> {
    let parsed: Reference = reference.parse()?;
    let resolved = hub.resolve(reference);
    let package = match (&resolved, &parsed) {
        (Ok(r), _) => r.package.clone(),
        (Err(_), Reference::Name { name, .. }) => {
            match hub.indexes().iter().find_map(|l| l.index.package(name)) {
                Some(p) => p.clone(),
                None => return Err(resolved.err().unwrap_or_else(|| not_found(reference))),
            }
        }
        (Err(_), Reference::Digest(_)) => {
            return Err(resolved.err().unwrap_or_else(|| not_found(reference)));
        }
    };
    Ok((package, resolved))
}

fn not_found(reference: &str) -> HubError {
    HubError::NotFound {
        reference: reference.into(),
        reason: "no loaded index lists it".into(),
    }
}
