//! Test support for Faultline's integration tests: paths of the guest components built by
//! `build.rs`, and guards for privileged tests.

use std::path::PathBuf;

/// Whether privileged tests may run here. When not root, prints the skip reason and returns
/// false, unless `FAULTLINE_REQUIRE_PRIVILEGED=1`, where a skip is a failure.
pub fn privileged(test: &str) -> bool {
    if nix_is_root() {
        return true;
    }
    let reason = format!("skipping {test}: needs root (network namespaces, cgroups, tc, nft)");
    assert!(
        std::env::var("FAULTLINE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "{reason}, and FAULTLINE_REQUIRE_PRIVILEGED=1 forbids skipping"
    );
    eprintln!("{reason}");
    false
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A loopback HTTP server for hub tests.
pub mod hubserver;
