//! Durations as people write them in parameters: `"30s"`, `"500ms"`, `"2m"`, `"1h 30m"` (the
//! grammar of the `humantime` crate, which the host's own command line uses too).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

/// A duration parameter, written as text (`"30s"`, `"500ms"`, `"2m"`). Its JSON Schema is a
/// string with a pattern, so the host refuses `"soon"` before the fault runs.
///
/// ```
/// # use faultline_sdk::HumanDuration;
/// let d: HumanDuration = serde_json::from_str("\"1m 30s\"").unwrap();
/// assert_eq!(d.get(), std::time::Duration::from_secs(90));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> HumanDuration {
        HumanDuration(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(s))
    }

    /// The duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Milliseconds, saturating.
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|e| {
                format!("{text:?} is not a duration like \"30s\", \"500ms\" or \"2m\": {e}")
            })
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<std::time::Duration> for HumanDuration {
    fn from(d: std::time::Duration) -> Self {
        HumanDuration(d)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (ms, s, m, h, d), e.g. \"30s\", \"500ms\", \"1h 30m\"",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$",
            "examples": ["30s", "500ms", "2m"]
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_what_people_write_and_names_what_it_cannot() {
        for (text, d) in [
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h 30m", Duration::from_secs(5400)),
        ] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().get(), d, "{text}");
        }
        let e = "soon".parse::<HumanDuration>().unwrap_err();
        assert!(e.starts_with("\"soon\" is not a duration"), "{e}");
        let e = serde_json::from_str::<HumanDuration>("10").unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
        let d: HumanDuration = serde_json::from_str("\"10s\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"10s\"");
    }
}
