//! The emergency stop every `faultline` process on a host obeys: a marker file in the state
//! directory. While it exists `faultline run` refuses to start, and a run under way stops
//! (every fault reverted) within a quarter of a second. `faultline emergency-stop` sets and
//! clears it.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// The most of the marker that is read: a reason, not a file to fill memory with.
const MAX_REASON: u64 = 4096;

/// The marker's path in `state_dir`.
pub fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join("emergency-stop")
}

/// The reason of the active emergency stop, if one is active (on the blocking pool).
pub async fn active(state_dir: &Path) -> Option<String> {
    let path = marker(state_dir);
    tokio::task::spawn_blocking(move || read(&path))
        .await
        .unwrap_or(None)
}

fn read(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    // A marker we cannot read as text still stops everything.
    let reason = match file.take(MAX_REASON).read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "no reason given".to_string(),
    };
    Some(reason)
}

/// Sets the emergency stop with `reason` (sync: callers on the runtime use the blocking pool).
pub fn set(state_dir: &Path, reason: &str) -> Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let path = marker(state_dir);
    let reason: String = reason.chars().take(512).collect();
    std::fs::write(&path, reason.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Clears it; returns whether one was active.
pub fn clear(state_dir: &Path) -> Result<bool> {
    let path = marker(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
