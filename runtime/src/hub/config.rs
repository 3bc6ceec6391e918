//! The agent's hub configuration: the `[hub]` section of `faultline.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use super::source::BUNDLED;
use super::{Capability, HubError, Source};

/// How the agent finds, trusts and filters hubs. Trust lives here, never in an index.
///
/// ```toml
/// [hub]
/// # Default: the bundled hub alone. "bundled" names it among other sources; a table gives a
/// # source a threshold of its own (0 accepts it unsigned, and must be said so).
/// sources = [
///   "bundled",
///   "https://hub.example.org/hub-index.json",
///   { url = "/srv/lab-hub", required_signatures = 0 },
/// ]
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
    /// Index locations, in priority order: `bundled`, a path (file or directory), a `file://`
    /// or `http(s)://` URL, or a table `{ url, required_signatures }`. Empty means the bundled
    /// hub alone. `[[hub.source]]` tables are another spelling of the same list (not both).
    #[serde(default, alias = "source")]
    pub sources: Vec<SourceEntry>,
    /// Public keys whose signatures count.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKey>,
    /// Valid signatures from distinct trusted keys the index of every source other than the
    /// bundled hub needs, unless the source sets its own. Omitted: 1. Only an explicit 0 (here
    /// or on the source) accepts unsigned indexes. The bundled hub's trust is built in.
    #[serde(default)]
    pub required_signatures: Option<usize>,
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
    /// `/var/cache/faultline/hub` (the command line uses `<state dir>/hub`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Largest index accepted, in bytes.
    #[serde(default = "default_max_index_bytes")]
    pub max_index_bytes: u64,
    /// Largest component accepted, in bytes: a larger release is refused before it is
    /// downloaded, and a larger cached file is never read whole.
    #[serde(default = "default_max_component_bytes")]
    pub max_component_bytes: u64,
    /// Time limit for one download, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// One configured source: where its index is, and the signatures it needs if not the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceEntry {
    /// `bundled`, a path, or a `file://` or `http(s)://` URL.
    pub url: String,
    /// Signatures this source's index needs; `None`: the `[hub]` value, else 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_signatures: Option<usize>,
}

impl From<&str> for SourceEntry {
    fn from(url: &str) -> Self {
        SourceEntry {
            url: url.to_string(),
            required_signatures: None,
        }
    }
}

impl From<String> for SourceEntry {
    fn from(url: String) -> Self {
        SourceEntry {
            url,
            required_signatures: None,
        }
    }
}

/// The table form of a source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    url: String,
    #[serde(default)]
    required_signatures: Option<usize>,
}

// A plain string or a table; written by hand so a bad table names its unknown field, which an
// untagged enum would hide behind "did not match any variant".
impl<'de> Deserialize<'de> for SourceEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SourceEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a source (path or URL) or a table { url, required_signatures }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SourceEntry, E> {
                Ok(SourceEntry::from(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SourceEntry, A::Error> {
                let table =
                    SourceTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SourceEntry {
                    url: table.url,
                    required_signatures: table.required_signatures,
                })
            }
        }
        deserializer.deserialize_any(Visit)
    }
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

/// Signatures a non-bundled index needs when the configuration says nothing.
const DEFAULT_REQUIRED_SIGNATURES: usize = 1;

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
            required_signatures: None,
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

/// A configured source with the signatures its index needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredSource {
    /// Where the index is.
    pub source: Source,
    /// Valid signatures from distinct trusted keys it needs (0 for the bundled hub, whose trust
    /// is built in, and for a source configured with an explicit 0).
    pub required_signatures: usize,
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

    /// Reads the `[hub]` section of the configuration file at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Self, HubError> {
        // Bounded, and never blocking on a FIFO: a configuration is a small text file.
        let text = crate::component::read_bounded(path, 1 << 20, "configuration")
            .and_then(|b| String::from_utf8(b).map_err(anyhow::Error::from))
            .map_err(|e| HubError::Config(format!("cannot read {}: {e:#}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base).map_err(|e| match e {
            HubError::Config(message) => HubError::Config(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    fn make_paths_absolute(&mut self, base_dir: &Path) {
        for entry in &mut self.sources {
            let url = &entry.url;
            if url != BUNDLED && !url.contains("://") && Path::new(url.as_str()).is_relative() {
                entry.url = base_dir.join(url.as_str()).display().to_string();
            }
        }
        if let Some(dir) = &self.cache_dir
            && dir.is_relative()
        {
            self.cache_dir = Some(base_dir.join(dir));
        }
    }

    /// Signatures the index of a source other than the bundled hub needs when the source does
    /// not say: `required_signatures` if given, else 1.
    pub fn default_required_signatures(&self) -> usize {
        self.required_signatures
            .unwrap_or(DEFAULT_REQUIRED_SIGNATURES)
    }

    /// Checks the configuration is usable: keys parse with unique ids, every explicit signature
    /// threshold can be met, patterns and sources are well formed.
    ///
    /// An omitted threshold (1) with no trusted keys is not an error here: such a source is
    /// refused when synced, naming the source and the signature it lacks.
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
        let unreachable = |what: String, required: usize| {
            HubError::Config(format!(
                "{what} is {required} but only {} distinct trusted key(s) are configured; \
                 add trusted_keys, or set required_signatures = 0 to accept unsigned indexes",
                keys.len()
            ))
        };
        if let Some(required) = self.required_signatures
            && required > keys.len()
        {
            return Err(unreachable("required_signatures".into(), required));
        }
        for pattern in self.allow.iter().chain(&self.deny) {
            if pattern.is_empty() {
                return Err(HubError::Config("an allow/deny pattern is empty".into()));
            }
            if let Err(e) = globset::Glob::new(pattern) {
                return Err(HubError::Config(format!(
                    "allow/deny pattern {pattern:?} is not a glob: {e}"
                )));
            }
        }
        for entry in &self.sources {
            let source = Source::parse(&entry.url)?;
            match entry.required_signatures {
                Some(_) if source.is_bundled() => {
                    return Err(HubError::Config(
                        "the bundled hub's trust is built in: it takes no required_signatures"
                            .into(),
                    ));
                }
                Some(required) if required > keys.len() => {
                    return Err(unreachable(
                        format!("required_signatures of source `{}`", entry.url),
                        required,
                    ));
                }
                _ => {}
            }
        }
        if self.timeout_secs == 0 {
            return Err(HubError::Config("timeout_secs must be above 0".into()));
        }
        Ok(())
    }

    /// The index sources, in priority order, with the signatures each needs; the bundled hub
    /// alone when none are configured.
    pub fn sources(&self) -> Result<Vec<ConfiguredSource>, HubError> {
        if self.sources.is_empty() {
            return Ok(vec![ConfiguredSource {
                source: Source::Bundled,
                required_signatures: 0,
            }]);
        }
        self.sources
            .iter()
            .map(|entry| {
                let source = Source::parse(&entry.url)?;
                let required_signatures = if source.is_bundled() {
                    0
                } else {
                    entry
                        .required_signatures
                        .unwrap_or_else(|| self.default_required_signatures())
                };
                Ok(ConfiguredSource {
                    source,
                    required_signatures,
                })
            })
            .collect()
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
            sources = ["mirror", "https://hub.example/hub-index.json", "bundled"]
            required_signatures = 0
            cache_dir = "cache"
            capabilities = ["log", "process"]
            [hub.pins]
            process-pause = "0.1.0"
        "#;
        let config = HubConfig::from_toml_str(text, Path::new("/etc/faultline")).unwrap();
        assert_eq!(config.sources[0].url, "/etc/faultline/mirror");
        let sources = config.sources().unwrap();
        assert_eq!(sources[2].source, Source::Bundled);
        assert!(sources.iter().all(|s| s.required_signatures == 0));
        assert_eq!(config.cache_dir(), PathBuf::from("/etc/faultline/cache"));
        assert_eq!(config.pins["process-pause"], semver::Version::new(0, 1, 0));
    }

    #[test]
    fn a_name_pattern_that_is_not_a_glob_is_refused() {
        let err =
            HubConfig::from_toml_str("[hub]\ndeny = [\"net[\"]\n", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("\"net[\" is not a glob"), "{err}");
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

    #[test]
    fn every_source_but_the_bundled_one_needs_a_signature_unless_told_otherwise() {
        let text = r#"
            [[hub.source]]
            url = "/srv/signed"
            [[hub.source]]
            url = "/srv/lab"
            required_signatures = 0
            [[hub.source]]
            url = "bundled"
        "#;
        let config = HubConfig::from_toml_str(text, Path::new("/")).unwrap();
        let sources = config.sources().unwrap();
        let required: Vec<_> = sources.iter().map(|s| s.required_signatures).collect();
        assert_eq!(required, [1, 0, 0]);
        // Plain strings and tables mix in the `sources` list.
        let text = "[hub]\nsources = [\"/a\", { url = \"/b\", required_signatures = 0 }]\n";
        let config = HubConfig::from_toml_str(text, Path::new("/")).unwrap();
        let required: Vec<_> = config
            .sources()
            .unwrap()
            .iter()
            .map(|s| s.required_signatures)
            .collect();
        assert_eq!(required, [1, 0]);
        // No sources: the bundled hub alone, trusted as built in.
        let sources = HubConfig::default().sources().unwrap();
        assert_eq!(
            sources,
            [ConfiguredSource {
                source: Source::Bundled,
                required_signatures: 0
            }]
        );
    }

    #[test]
    fn a_bad_source_table_names_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faultline.toml");
        std::fs::write(
            &path,
            "[[hub.source]]\nurl = \"/a\"\nrequired_signature = 0\n",
        )
        .unwrap();
        let err = HubConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("required_signature"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        let err = HubConfig::from_toml_str(
            "[[hub.source]]\nurl = \"bundled\"\nrequired_signatures = 0\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("built in"), "{err}");
    }
}
