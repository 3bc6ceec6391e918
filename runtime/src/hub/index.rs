//! The index model (`hub-index.json`) and its parsing against the published JSON Schema.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Digest, HubError};

/// The index's file name.
pub const INDEX_FILE: &str = "hub-index.json";
/// The detached signature file's name, beside the index.
pub const SIGNATURE_FILE: &str = "hub-index.json.sig";
/// The index format version this runtime reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The published JSON Schema of the index (`hub/schema/hub-index.schema.json`), as text.
const SCHEMA_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../hub/schema/hub-index.schema.json"
));

/// The published JSON Schema of the index (draft 2020-12).
pub fn index_schema() -> &'static str {
    SCHEMA_TEXT
}

/// A hub's index: what it publishes, for which runtime, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Format version; [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Which hub this is.
    pub hub: HubInfo,
    /// Monotonic counter; agents refuse a lower serial than one already seen.
    pub serial: u64,
    /// When the index was written (RFC 3339, UTC).
    pub generated: String,
    /// When the index stops being accepted (RFC 3339, UTC).
    pub expires: String,
    /// Semver requirement on the runtime versions supported.
    pub runtime: String,
    /// The packages, with unique names.
    pub packages: Vec<Package>,
    /// `x-*` extension fields, kept when rewriting the index.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Identity of a hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubInfo {
    /// Stable id; keys the cache and rollback protection.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `x-*` extension fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Whether a package is a fault or a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Breaks something on inject, undoes it on revert.
    Fault,
    /// Checks something.
    Probe,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Fault => "fault",
            Kind::Probe => "probe",
        })
    }
}

/// A published fault or probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// Package name, e.g. `process-pause`.
    pub name: String,
    /// Fault or probe.
    pub kind: Kind,
    /// One line on what it does.
    pub description: String,
    /// Free-form categories, for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Who maintains it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<String>,
    /// Where its source lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Releases, newest first.
    pub versions: Vec<Release>,
    /// `x-*` extension fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One release of a package: a component with its digest and declared contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Semantic version.
    pub version: semver::Version,
    /// sha256 of the component.
    pub digest: Digest,
    /// Size of the component in bytes.
    pub size: u64,
    /// Download locations, tried in order; relative ones are resolved against the index.
    pub urls: Vec<String>,
    /// WIT package the component is built against, e.g. `faultline:contract@0.1.0`.
    pub contract: String,
    /// Declared capability interfaces; imports beyond them are refused.
    pub capabilities: Vec<CapabilityDecl>,
    /// JSON Schema of the parameters, with defaults.
    pub params_schema: Map<String, Value>,
    /// Whether revert truly undoes inject.
    pub revertible: bool,
    /// Set when the release is withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanked: Option<Yanked>,
    /// Set when the release is superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecated>,
    /// `x-*` extension fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Release {
    /// The contract version, e.g. `0.1.0` for `faultline:contract@0.1.0`.
    pub fn contract_version(&self) -> &str {
        self.contract
            .split_once('@')
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// Whether the release declares `capability`.
    pub fn declares(&self, capability: Capability) -> bool {
        self.capabilities.iter().any(|c| c.interface == capability)
    }
}

/// Why a release was withdrawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Yanked {
    /// The reason, for people.
    pub reason: String,
}

/// Why a release is superseded, and by what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deprecated {
    /// The reason, for people.
    pub reason: String,
    /// A package reference to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// A capability interface of the contract, as declared in the index: the policy's own.
pub use crate::policy::Capability;

/// A declared capability with optional scope hints for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityDecl {
    /// The interface.
    pub interface: Capability,
    /// Informative scope hints, e.g. `{"signals": ["SIGSTOP"]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Map<String, Value>>,
}

/// Whether `text` is an identifier of the index schema (`[a-z0-9][a-z0-9._-]{0,63}`): a hub id
/// or a package name.
pub(crate) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn schema_validator() -> Result<&'static jsonschema::Validator, HubError> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SCHEMA_TEXT)
                .map_err(|e| format!("the bundled index schema is not JSON: {e}"))?;
            jsonschema::draft202012::new(&schema)
                .map_err(|e| format!("the bundled index schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(|e| HubError::Config(e.clone()))
}

/// Checks `value` against the index schema; returns up to five problems with their paths.
pub(crate) fn schema_problems(value: &Value) -> Result<Vec<String>, HubError> {
    let validator = schema_validator()?;
    Ok(validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("at {path}: {e}")
            }
        })
        .collect())
}

impl Index {
    /// Parses index bytes from `origin` (used in messages): JSON, the published schema, then
    /// consistency (unique names and versions). Does not check signatures, expiry or URLs.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, HubError> {
        let invalid = |reason: String| HubError::InvalidIndex {
            index: origin.to_string(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if let Some(v) = value.get("schema_version").and_then(Value::as_u64)
            && v != u64::from(SCHEMA_VERSION)
        {
            return Err(invalid(format!(
                "schema_version {v} is not supported; this runtime reads version {SCHEMA_VERSION}"
            )));
        }
        let problems = schema_problems(&value)?;
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let index: Index = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        index.check_consistency().map_err(invalid)?;
        Ok(index)
    }

    fn check_consistency(&self) -> Result<(), String> {
        semver::VersionReq::parse(&self.runtime).map_err(|e| {
            format!(
                "runtime `{}` is not a semver requirement: {e}",
                self.runtime
            )
        })?;
        for (field, value) in [("generated", &self.generated), ("expires", &self.expires)] {
            humantime::parse_rfc3339(value)
                .map_err(|e| format!("{field} `{value}` is not an RFC 3339 UTC time: {e}"))?;
        }
        let mut names = BTreeSet::new();
        for package in &self.packages {
            if !names.insert(package.name.as_str()) {
                return Err(format!("package `{}` is listed twice", package.name));
            }
            let mut versions = BTreeSet::new();
            for release in &package.versions {
                if !versions.insert(&release.version) {
                    return Err(format!(
                        "{}@{} is listed twice",
                        package.name, release.version
                    ));
                }
            }
        }
        Ok(())
    }

    /// The package named `name`.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// The index as pretty JSON with a final newline, as `hub build` writes it.
    pub fn to_json_pretty(&self) -> Result<Vec<u8>, HubError> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| HubError::Config(format!("cannot serialise the index: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "schema_version": 1,
            "hub": {"id": "test", "name": "Test hub"},
            "serial": 3,
            "generated": "2025-01-01T00:00:00Z",
            "expires": "2099-01-01T00:00:00Z",
            "runtime": "^0.1",
            "packages": [{
                "name": "process-pause",
                "kind": "fault",
                "description": "Pauses processes",
                "versions": [{
                    "version": "0.1.0",
                    "digest": Digest::of(b"x").to_string(),
                    "size": 1,
                    "urls": ["components/process-pause-0.1.0.wasm"],
                    "contract": "faultline:contract@0.1.0",
                    "capabilities": [{"interface": "process", "scope": {"signals": ["SIGSTOP"]}}],
                    "params_schema": {"type": "object"},
                    "revertible": true,
                    "x-note": "kept"
                }]
            }]
        })
    }

    #[test]
    fn parses_a_valid_index_and_round_trips_extensions() {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        let index = Index::parse(&bytes, "t").unwrap();
        assert_eq!(index.packages[0].versions[0].contract_version(), "0.1.0");
        let again = Index::parse(&index.to_json_pretty().unwrap(), "t").unwrap();
        assert_eq!(again, index);
        assert!(again.packages[0].versions[0].extra.contains_key("x-note"));
    }

    #[test]
    fn schema_errors_name_the_path() {
        let mut v = sample();
        v["packages"][0]["versions"][0]["capabilities"][0]["interface"] = "disk".into();
        let err = Index::parse(&serde_json::to_vec(&v).unwrap(), "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("/packages/0/versions/0/capabilities/0/interface"),
            "{err}"
        );
        let mut v = sample();
        v["schema_version"] = 2.into();
        let err = Index::parse(&serde_json::to_vec(&v).unwrap(), "t").unwrap_err();
        assert!(err.to_string().contains("schema_version 2"), "{err}");
    }

    #[test]
    fn identifiers_follow_the_schema_pattern() {
        for good in [
            "acme",
            "process-pause",
            "a",
            "0day",
            "x.y_z-1",
            &"a".repeat(64),
        ] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "Acme", "-x", ".x", "a b", "a/b", "ä", &"a".repeat(65)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let mut v = sample();
        let release = v["packages"][0]["versions"][0].clone();
        v["packages"][0]["versions"]
            .as_array_mut()
            .unwrap()
            .push(release);
        let err = Index::parse(&serde_json::to_vec(&v).unwrap(), "t").unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }
}
