//! A curator's edits of an index: `faultline hub init` starts one, `hub yank` and `hub unyank`
//! withdraw a release and bring it back, `hub renew` moves its expiry on. Each edit bumps the serial (agents refuse an index
//! whose serial went back), renews `generated`, and removes the signature file, which no
//! longer matches: sign again. Blocking file I/O: call from the blocking pool.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::build::write_index;
use super::{BUNDLED_HUB_ID, HubError, HubInfo, Index, SCHEMA_VERSION, Yanked};

/// Longest hub name, and longest yank reason, in bytes.
const MAX_TEXT: usize = 1024;

/// A new index with no packages: serial 1, generated `now`, valid for `validity`, requiring
/// this runtime's minor version. Refuses the bundled hub's id (the cache and rollback
/// protection are keyed by the id, so two hubs must never share one) and ids outside the
/// index schema's `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn new_index(
    id: &str,
    name: &str,
    now: SystemTime,
    validity: Duration,
) -> Result<Index, HubError> {
    if id == BUNDLED_HUB_ID {
        return Err(HubError::Config(format!(
            "`{id}` is the bundled hub's id; a hub of your own needs an id of its own, because \
             agents key the cache and rollback protection by it"
        )));
    }
    if !super::index::is_identifier(id) {
        return Err(HubError::Config(format!(
            "hub id {id:?} is not lower-case letters, digits, `.`, `_` and `-` starting with a \
             letter or digit (at most 64)"
        )));
    }
    if name.trim().is_empty() || name.len() > MAX_TEXT {
        return Err(HubError::Config(format!(
            "the hub name must be 1 to {MAX_TEXT} bytes of text"
        )));
    }
    let runtime = semver::Version::parse(env!("CARGO_PKG_VERSION"))
        .map(|v| format!("^{}.{}", v.major, v.minor))
        .unwrap_or_else(|_| "*".into());
    let index = Index {
        schema_version: SCHEMA_VERSION,
        hub: HubInfo {
            id: id.to_string(),
            name: name.to_string(),
            extra: Default::default(),
        },
        serial: 1,
        generated: humantime::format_rfc3339_seconds(now).to_string(),
        expires: humantime::format_rfc3339_seconds(now + validity).to_string(),
        runtime,
        packages: Vec::new(),
        extra: Default::default(),
    };
    // What agents and `hub build` will read back must parse.
    Index::parse(&index.to_json_pretty()?, "the new index")?;
    Ok(index)
}

/// Writes a new empty index at `path` ([`new_index`]); refuses to replace an existing file.
pub fn init(path: &Path, id: &str, name: &str, validity: Duration) -> Result<Index, HubError> {
    let index = new_index(id, name, SystemTime::now(), validity)?;
    if path.exists() {
        return Err(HubError::Config(format!(
            "{} exists already: a hub is started once (delete the file to start over)",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| HubError::io(format!("creating {}", parent.display()), e))?;
    }
    write_index(path, &index)?;
    Ok(index)
}

/// Yanks `name@version` in the index at `path` with `reason` (`Some`), or brings it back
/// (`None`). Returns the index and whether it changed (a yank that is already so writes
/// nothing, keeping the serial and the signature). Resolution skips a yanked release unless it is pinned
/// exactly; nothing is deleted, so pinned users keep working.
pub fn set_yanked(
    path: &Path,
    name: &str,
    version: &semver::Version,
    reason: Option<&str>,
) -> Result<(Index, bool), HubError> {
    if let Some(reason) = reason
        && (reason.trim().is_empty() || reason.len() > MAX_TEXT)
    {
        return Err(HubError::Config(format!(
            "the reason must be 1 to {MAX_TEXT} bytes of text: people read it when resolution \
             skips the release"
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
    let mut index = Index::parse(&bytes, &path.display().to_string())?;
    let package = index
        .packages
        .iter_mut()
        .find(|p| p.name == name)
        .ok_or_else(|| HubError::Config(format!("{} has no package `{name}`", path.display())))?;
    let release = package
        .versions
        .iter_mut()
        .find(|r| &r.version == version)
        .ok_or_else(|| {
            HubError::Config(format!(
                "{} has no release {name}@{version}",
                path.display()
            ))
        })?;
    let wanted = reason.map(|r| Yanked {
        reason: r.to_string(),
    });
    if release.yanked == wanted {
        return Ok((index, false));
    }
    release.yanked = wanted;
    index.serial += 1;
    index.generated = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    write_index(path, &index)?;
    Ok((index, true))
}

/// Renews the index at `path`: valid for `validity` from now, with a new serial and
/// `generated`, so agents take it as the newer index; removes the stale signature. For an
/// index whose content has not changed but whose `expires` is near (`hub build` renews only
/// when something changed). Returns the index written.
pub fn renew(path: &Path, validity: Duration) -> Result<Index, HubError> {
    let bytes =
        std::fs::read(path).map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
    let mut index = Index::parse(&bytes, &path.display().to_string())?;
    let now = SystemTime::now();
    index.serial += 1;
    index.generated = humantime::format_rfc3339_seconds(now).to_string();
    index.expires = humantime::format_rfc3339_seconds(now + validity).to_string();
    write_index(path, &index)?;
    Ok(index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hub_has_its_own_id_and_an_empty_valid_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub-index.json");
        let day = Duration::from_secs(86_400);
        let e = init(&path, "faultline", "Mine", day)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bundled hub's id"), "{e}");
        let e = init(&path, "Acme Hub", "Mine", day)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"Acme Hub\""), "{e}");
        assert!(!path.exists(), "a refused init writes nothing");
        let index = init(&path, "acme", "Acme chaos hub", day).unwrap();
        assert_eq!(index.serial, 1);
        assert!(index.packages.is_empty());
        let read = Index::parse(&std::fs::read(&path).unwrap(), "t").unwrap();
        assert_eq!(read, index);
        let e = init(&path, "acme", "Again", day).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{e}");
    }

    #[test]
    fn yanking_bumps_the_serial_and_drops_the_stale_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub-index.json");
        // The bundled index has releases to yank.
        let bundled = include_bytes!("../../../hub-index.json");
        std::fs::write(&path, bundled).unwrap();
        let sig = super::super::signature_path(&path);
        std::fs::write(&sig, "stale").unwrap();
        let before = Index::parse(bundled, "t").unwrap();
        let package = &before.packages[0];
        let version = package.versions[0].version.clone();

        let (yanked, changed) =
            set_yanked(&path, &package.name, &version, Some("leaks a qdisc")).unwrap();
        assert!(changed);
        assert_eq!(yanked.serial, before.serial + 1);
        let release = &yanked.packages[0].versions[0];
        assert_eq!(release.yanked.as_ref().unwrap().reason, "leaks a qdisc");
        assert!(!sig.exists(), "the old signature no longer matches");
        assert_eq!(
            Index::parse(&std::fs::read(&path).unwrap(), "t").unwrap(),
            yanked
        );
        // The same yank again changes nothing.
        std::fs::write(&sig, "kept").unwrap();
        let (again, changed) =
            set_yanked(&path, &package.name, &version, Some("leaks a qdisc")).unwrap();
        assert!(!changed);
        assert_eq!(again.serial, yanked.serial);
        assert!(sig.exists());

        let (back, changed) = set_yanked(&path, &package.name, &version, None).unwrap();
        assert!(changed);
        assert_eq!(back.serial, yanked.serial + 1);
        assert!(back.packages[0].versions[0].yanked.is_none());

        let e = set_yanked(&path, "no-such", &version, Some("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no package `no-such`"), "{e}");
        let other = semver::Version::new(9, 9, 9);
        let e = set_yanked(&path, &package.name, &other, Some("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("@9.9.9"), "{e}");
        let e = set_yanked(&path, &package.name, &version, Some(" "))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reason"), "{e}");
    }
}
