//! Whether an index may be used: signatures, format, runtime, expiry, rollback.

use std::time::SystemTime;

use super::bundled::{self, BUNDLED_HUB_ID};
use super::cache::HubState;
use super::{Digest, HubConfig, HubError, Index, Source, sign};

/// An index that passed [`verify_index`].
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// The parsed index.
    pub index: Index,
    /// The digest of its exact bytes.
    pub digest: Digest,
    /// Valid signatures from distinct trusted keys.
    pub signatures: usize,
}

/// Checks index bytes from `origin` (not the bundled hub): signatures over the exact bytes
/// first, `required` of them from distinct trusted keys (nothing untrusted is interpreted
/// before that), then the schema, the runtime requirement, the reserved bundled hub id and the
/// expiry.
pub(crate) fn verify_index(
    bytes: &[u8],
    sig: Option<&[u8]>,
    origin: &str,
    config: &HubConfig,
    required: usize,
    now: SystemTime,
) -> Result<Verified, HubError> {
    let signatures = sign::verify(bytes, sig, &config.trusted_keys, required, origin)?;
    let index = Index::parse(bytes, origin)?;
    check_runtime(&index, env!("CARGO_PKG_VERSION"))?;
    if index.hub.id == BUNDLED_HUB_ID {
        return Err(HubError::ReservedHubId {
            index: origin.to_string(),
            hub: index.hub.id,
        });
    }
    if !config.allow_expired {
        check_expiry(&index, now)?;
    }
    Ok(Verified {
        digest: Digest::of(bytes),
        index,
        signatures,
    })
}

/// The bundled index, compiled into the binary: its trust is built in, so it needs no
/// signature, and its expiry does not apply (it cannot be replayed: it is the binary's own).
pub(crate) fn verify_bundled() -> Result<Verified, HubError> {
    let bytes = bundled::index();
    let origin = Source::Bundled.to_string();
    let index = Index::parse(bytes, &origin)?;
    check_runtime(&index, env!("CARGO_PKG_VERSION"))?;
    Ok(Verified {
        digest: Digest::of(bytes),
        index,
        signatures: 0,
    })
}

/// Verifies the index file at `path` and the signature file beside it with `config`'s
/// trusted keys and expiry rule; touches no cache or rollback state. It needs at least one
/// valid signature (the configured default threshold if higher): with no trusted keys, or an
/// unsigned index, nothing is verified and it fails.
pub fn verify_file(path: &std::path::Path, config: &HubConfig) -> Result<Index, HubError> {
    let origin = path.display().to_string();
    if config.trusted_keys.is_empty() {
        return Err(HubError::NoTrust { index: origin });
    }
    let required = config.default_required_signatures().max(1);
    let bytes =
        std::fs::read(path).map_err(|e| HubError::io(format!("reading {}", path.display()), e))?;
    let sig_path = super::signature_path(path);
    let sig = match std::fs::read(&sig_path) {
        Ok(sig) => Some(sig),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HubError::io(format!("reading {}", sig_path.display()), e)),
    };
    verify_index(
        &bytes,
        sig.as_deref(),
        &origin,
        config,
        required,
        SystemTime::now(),
    )
    .map(|v| v.index)
}

/// Refuses an index whose `runtime` requirement excludes `running`.
pub(crate) fn check_runtime(index: &Index, running: &str) -> Result<(), HubError> {
    let unsupported = || HubError::UnsupportedRuntime {
        hub: index.hub.id.clone(),
        required: index.runtime.clone(),
        running: running.to_string(),
    };
    let req = semver::VersionReq::parse(&index.runtime).map_err(|_| unsupported())?;
    let version = semver::Version::parse(running).map_err(|_| unsupported())?;
    if req.matches(&version) {
        Ok(())
    } else {
        Err(unsupported())
    }
}

/// Refuses an index past its `expires` time.
pub(crate) fn check_expiry(index: &Index, now: SystemTime) -> Result<(), HubError> {
    let expired = || HubError::Expired {
        hub: index.hub.id.clone(),
        expires: index.expires.clone(),
    };
    let expires = humantime::parse_rfc3339(&index.expires).map_err(|_| expired())?;
    if now >= expires {
        Err(expired())
    } else {
        Ok(())
    }
}

/// Refuses an index older than the newest seen for its hub id, or one reusing the newest
/// serial with different bytes. Returns whether it is newer than anything seen.
pub(crate) fn check_rollback(state: &HubState, verified: &Verified) -> Result<bool, HubError> {
    let hub = &verified.index.hub.id;
    let serial = verified.index.serial;
    if serial < state.highest_serial {
        return Err(HubError::Rollback {
            hub: hub.clone(),
            seen: state.highest_serial,
            got: serial,
        });
    }
    if serial == state.highest_serial {
        if state.digest.is_some_and(|d| d != verified.digest) {
            return Err(HubError::SerialReused {
                hub: hub.clone(),
                serial,
            });
        }
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn runtime_requirement_is_checked() {
        let index: Index = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "hub": {"id": "h", "name": "H"}, "serial": 1,
            "generated": "2025-01-01T00:00:00Z", "expires": "2025-02-01T00:00:00Z",
            "runtime": "^0.1", "packages": []
        }))
        .unwrap();
        assert!(check_runtime(&index, "0.1.4").is_ok());
        assert!(matches!(
            check_runtime(&index, "0.2.0"),
            Err(HubError::UnsupportedRuntime { .. })
        ));
        let jan = humantime::parse_rfc3339("2025-01-15T00:00:00Z").unwrap();
        let mar = humantime::parse_rfc3339("2025-03-01T00:00:00Z").unwrap();
        assert!(check_expiry(&index, jan).is_ok());
        assert!(matches!(
            check_expiry(&index, mar),
            Err(HubError::Expired { .. })
        ));
    }
}
