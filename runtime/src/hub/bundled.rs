//! The bundled hub: its index and artefacts, compiled into the binary by `runtime/build.rs`.
//!
//! Its trust is built in: the bytes are the binary's own, as trusted as the agent itself, so its
//! index needs no signature and no expiry check. Its hub id is reserved: another source cannot
//! claim it, and so cannot pass its components off as bundled ones.

include!(concat!(env!("OUT_DIR"), "/bundled_hub.rs"));

/// The bundled hub's id (from its index), reserved for it.
pub const BUNDLED_HUB_ID: &str = HUB_ID;

/// The bundled index, byte for byte.
pub(crate) fn index() -> &'static [u8] {
    INDEX
}

/// The embedded artefact at `url` (relative, as written in the bundled index).
pub(crate) fn artifact(url: &str) -> Option<&'static [u8]> {
    ARTIFACTS
        .binary_search_by(|(u, _)| (*u).cmp(url))
        .ok()
        .map(|i| ARTIFACTS[i].1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_artefact_is_embedded_with_its_digest() {
        let index = crate::hub::Index::parse(index(), "bundled").unwrap();
        assert_eq!(index.hub.id, BUNDLED_HUB_ID);
        let mut count = 0;
        for package in &index.packages {
            for release in &package.versions {
                for url in &release.urls {
                    let bytes = artifact(url).unwrap_or_else(|| panic!("{url} not embedded"));
                    assert_eq!(crate::hub::Digest::of(bytes), release.digest, "{url}");
                    assert_eq!(bytes.len() as u64, release.size, "{url}");
                    count += 1;
                }
            }
        }
        assert_eq!(count, ARTIFACTS.len());
        assert!(artifact("hub/components/nope.wasm").is_none());
    }
}
