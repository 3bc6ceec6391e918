//! The agent's hub configuration: the `[hub]` section of `faultline.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use super::{Capability, HubError, INDEX_FILE, Source};

/// How the agent finds, trusts and filters hubs. Trust lives here, never in an index.
///
/// ```toml
/// [hub]
/// sources = ["https://hub.example.org/hub-index.json"]  # default: the bundled hub
/// required_signatures = 1
/// cache_dir = "/var/cache/faultline/hub"
/// deny = ["network-*"]
/// capabilities = ["log", "rollback", "process"]   # ceiling; default: all
///
/// [[hub.trusted_keys]]
/// id = "faultline-2025"
/// key = "<base64 of the 32-byte Ed25519 public key, or a PEM public key>"
///
/// [hub.pins]
/// process-pause = "0.1.0"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Index locations, in priority order: a path (file or directory), `file://` or
    /// `http(s)://` URL. Empty means the bundled hub ([`bundled_index_path`]).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Public keys whose signatures count.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKey>,
    /// Valid signatures from distinct trusted keys an index needs; 0 accepts unsigned indexes.
    #[serde(default = "default_required_signatures")]
    pub required_signatures: usize,
    /// Name patterns (`*`, `?` wildcards) allowed; empty allows every name.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Name patterns refused; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Exact versions to use, by package name; a pinned yanked version is still usable.
    #[serde(default)]
    pub pins: BTreeMap<String, semver::Version>,
    /// Capability ceiling: a release declaring anything else is refused. `None`: no ceiling.
    #[serde(default)]
    pub capabilities: Option<Vec<Capability>>,
    /// Never use the network: http sources come from the cache only.
    #[serde(default)]
    pub offline: bool,
    /// Accept indexes past their `expires` time.
    #[serde(default)]
    pub allow_expired: bool,
    /// Cache directory; default `$XDG_CACHE_HOME/faultline/hub`, `~/.cache/faultline/hub`, or
    /// `/var/cache/faultline/hub`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Largest index accepted, in bytes.
    #[serde(default = "default_max_index_bytes")]
    pub max_index_bytes: u64,
    /// Largest component accepted, in bytes.
    #[serde(default = "default_max_component_bytes")]
    pub max_component_bytes: u64,
    /// Time limit for one download, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// A public key the agent trusts to sign indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// The id signers put in the signature file.
    pub id: String,
    /// Base64 of the 32-byte Ed25519 public key, or a PEM (`BEGIN PUBLIC KEY`) SPKI key.
    pub key: String,
}

impl TrustedKey {
    /// The parsed public key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HubError> {
        let bad = |reason: String| {
            HubError::Config(format!("trusted key `{}` is not usable: {reason}", self.id))
        };
        let text = self.key.trim();
        if text.contains("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(text).map_err(|e| bad(e.to_string()));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| bad(format!("{} bytes, an Ed25519 key has 32", v.len())))?;
        VerifyingKey::from_bytes(&raw).map_err(|e| bad(e.to_string()))
    }
}

fn default_required_signatures() -> usize {
    1
}
fn default_max_index_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_component_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_timeout_secs() -> u64 {
    60
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            sources: Vec::new(),
            trusted_keys: Vec::new(),
            required_signatures: default_required_signatures(),
            allow: Vec::new(),
            deny: Vec::new(),
            pins: BTreeMap::new(),
            capabilities: None,
            offline: false,
            allow_expired: false,
            cache_dir: None,
            max_index_bytes: default_max_index_bytes(),
            max_component_bytes: default_max_component_bytes(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    hub: Option<HubConfig>,
}

impl HubConfig {
    /// Reads the `[hub]` section of a whole `faultline.toml` (other sections are ignored;
    /// a missing section gives the defaults). Relative paths in `sources` and `cache_dir` are
    /// taken relative to `base_dir`, the configuration file's directory.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, HubError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| HubError::Config(format!("[hub]: {e}")))?;
        let mut config = file.hub.unwrap_or_default();
        config.make_paths_absolute(base_dir);
        config.validate()?;
        Ok(config)
    }

    /// Reads the `[hub]` section of the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, HubError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HubError::Config(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base)
    }

    fn make_paths_absolute(&mut self, base_dir: &Path) {
        for source in &mut self.sources {
            if !source.contains("://") && Path::new(source.as_str()).is_relative() {
                *source = base_dir.join(source.as_str()).display().to_string();
            }
        }
        if let Some(dir) = &self.cache_dir
            && dir.is_relative()
        {
            self.cache_dir = Some(base_dir.join(dir));
        }
    }

    /// Checks the configuration is usable: keys parse with unique ids, the signature
    /// threshold can be met, patterns and sources are well formed.
    pub fn validate(&self) -> Result<(), HubError> {
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for key in &self.trusted_keys {
            if !ids.insert(key.id.as_str()) {
                return Err(HubError::Config(format!(
                    "trusted key id `{}` is listed twice",
                    key.id
                )));
            }
            keys.insert(key.verifying_key()?.to_bytes());
        }
        if self.required_signatures > keys.len() {
            return Err(HubError::Config(format!(
                "required_signatures is {} but only {} distinct trusted key(s) are configured; \
                 add trusted_keys, or set required_signatures = 0 to accept unsigned indexes",
                self.required_signatures,
                keys.len()
            )));
        }
        for pattern in self.allow.iter().chain(&self.deny) {
            if pattern.is_empty() {
                return Err(HubError::Config("an allow/deny pattern is empty".into()));
            }
        }
        for source in &self.sources {
            Source::parse(source)?;
        }
        if self.timeout_secs == 0 {
            return Err(HubError::Config("timeout_secs must be above 0".into()));
        }
        Ok(())
    }

    /// The index sources, in priority order; the bundled hub when none are configured.
    pub fn sources(&self) -> Result<Vec<Source>, HubError> {
        if self.sources.is_empty() {
            return Ok(vec![Source::Path(bundled_index_path())]);
        }
        self.sources.iter().map(|s| Source::parse(s)).collect()
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("faultline/hub");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".cache/faultline/hub");
        }
        PathBuf::from("/var/cache/faultline/hub")
    }

    /// The time limit for one download.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Where the bundled hub's index is: `$FAULTLINE_HUB` (a file, or a directory holding
/// `hub-index.json`); else, beside an installed binary, `<exe dir>/../share/faultline/hub-index.json`;
/// else, for a binary in a checkout's `target/<profile>/`, `<exe dir>/../../hub-index.json`;
/// else the checkout this runtime was compiled from.
pub fn bundled_index_path() -> PathBuf {
    if let Some(env) = std::env::var_os("FAULTLINE_HUB").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(env);
        return if path.is_dir() {
            path.join(INDEX_FILE)
        } else {
            path
        };
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for candidate in [
            dir.join("../share/faultline").join(INDEX_FILE),
            dir.join("../..").join(INDEX_FILE),
        ] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(INDEX_FILE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hub_section_and_resolves_relative_paths() {
        let text = r#"
            [agent]
            listen = "ignored"
            [hub]
            sources = ["mirror", "https://hub.example/hub-index.json"]
            required_signatures = 0
            cache_dir = "cache"
            capabilities = ["log", "process"]
            [hub.pins]
            process-pause = "0.1.0"
        "#;
        let config = HubConfig::from_toml_str(text, Path::new("/etc/faultline")).unwrap();
        assert_eq!(config.sources[0], "/etc/faultline/mirror");
        assert_eq!(config.cache_dir(), PathBuf::from("/etc/faultline/cache"));
        assert_eq!(config.pins["process-pause"], semver::Version::new(0, 1, 0));
    }

    #[test]
    fn refuses_an_unreachable_threshold_and_unknown_fields() {
        let err = HubConfig::from_toml_str("[hub]\nrequired_signatures = 1\n", Path::new("."))
            .unwrap_err();
        assert!(
            err.to_string().contains("only 0 distinct trusted key"),
            "{err}"
        );
        let err = HubConfig::from_toml_str("[hub]\nrequired_signature = 0\n", Path::new("."))
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
