//! The experiment file: `apiVersion: faultline/v1`, `kind: Experiment`, in YAML or JSON.
//!
//! These types are the file's schema: unknown fields are errors, and the published JSON Schema
//! (`docs/experiment.schema.json`, `faultline experiment schema`) is generated from them.
//!
//! ```yaml
//! apiVersion: faultline/v1
//! kind: Experiment
//! name: web survives a pause
//! lanes:
//!   - name: chaos
//!     steps:
//!       - wait: 2s
//!       - name: pause-web
//!         fault: process-pause@^0.1
//!         duration: 5s
//!         targets: { names: [demo-service] }
//! probes:
//!   - name: web-up
//!     probe: http-probe@^0.1
//!     params: { url: "http://127.0.0.1:8080/" }
//!     mode: continuous
//!     interval: 500ms
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The one API version this runtime reads.
pub const API_VERSION: &str = "faultline/v1";

/// Limits on what one file may ask for: every input is bounded.
pub mod limits {
    /// Bytes of one experiment file.
    pub const FILE_BYTES: usize = 1 << 20;
    /// Values (scalars, lists, maps) in one file, each use of a YAML alias counted in full: an
    /// alias bomb is refused before anything is built from it.
    pub const VALUES: usize = 1 << 18;
    /// Lanes in one experiment.
    pub const LANES: usize = 32;
    /// Steps in one lane.
    pub const STEPS: usize = 256;
    /// Probes in one experiment.
    pub const PROBES: usize = 64;
    /// Targets one fault step may resolve to.
    pub const TARGETS: usize = 256;
    /// The longest any duration in the file may be (7 days, as for `faultline inject`).
    pub const DURATION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    /// The shortest interval of a continuous or on-chaos probe.
    pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
    /// Attempts of one probe check.
    pub const ATTEMPTS: u32 = 100;
    /// Bytes of a name (experiment, lane, step, probe).
    pub const NAME: usize = 128;
    /// Bytes of a team's name.
    pub const TEAM: usize = 64;
}

/// `apiVersion`: only `faultline/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// The first version.
    #[serde(rename = "faultline/v1")]
    V1,
}

/// `kind`: only `Experiment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExperimentKind {
    /// An experiment.
    Experiment,
}

/// A duration written as text: `500ms`, `5s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

// Checked inside the visitor, so the parser places an error at the duration itself.
impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Span;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 500ms, 5s, 2m")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Span, E> {
                let parsed = humantime::parse_duration(text).map_err(|e| {
                    E::custom(format!(
                        "{text:?} is not a duration ({e}); write e.g. 500ms, 5s, 2m"
                    ))
                })?;
                if parsed > limits::DURATION {
                    return Err(E::custom(format!(
                        "{text:?} is longer than the 7 days any duration may be"
                    )));
                }
                Ok(Span(parsed))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: 500ms, 5s, 2m, 1h 30m (at most 7 days).",
            "pattern": "^\\s*[0-9]+\\s*[a-zµ]+(\\s*[0-9]+\\s*[a-zµ]+)*\\s*$",
        })
    }
}

/// An experiment: lanes of steps that run in parallel, probes that judge the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Always `faultline/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Experiment`.
    pub kind: ExperimentKind,
    /// What the experiment is called (1 to 128 bytes).
    #[schemars(length(min = 1, max = limits::NAME))]
    pub name: String,
    /// What it shows, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels for finding it in the history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The team that owns it (1 to 64 of `a-z`, `0-9`, `-`): on an agent only a runner of this
    /// team (or an admin) starts, stops and reads it; without one only an admin starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::TEAM), pattern(r"^[a-z0-9-]{1,64}$"))]
    pub team: Option<String>,
    /// Ids of configured hubs its faults and probes may come from (the `hub.id` of their index;
    /// the hub built into the binary is `faultline`); empty: every configured hub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<String>,
    /// The longest the whole run may take; past it every fault is reverted and the run ends
    /// with status `timeout`. Default: the longest lane, plus the worst case of the probes
    /// before and after, plus a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    /// Lanes run in parallel; each runs its steps in order (1 to 32 lanes).
    #[schemars(length(min = 1, max = limits::LANES))]
    pub lanes: Vec<Lane>,
    /// Probes: checks of the system at points of the run or continuously (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::PROBES))]
    pub probes: Vec<ProbeSpec>,
}

/// A lane: steps, one after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    /// A name for the lane (default `lane-N`, from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::NAME))]
    pub name: Option<String>,
    /// Its steps, in order (1 to 256).
    #[schemars(length(min = 1, max = limits::STEPS))]
    pub steps: Vec<Step>,
}

/// A step: exactly one of `fault`, `wait` or `probe`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A name, unique in the experiment (default `<lane>-<N>`); probes name fault steps by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::NAME))]
    pub name: Option<String>,
    /// A fault to inject: a hub reference (`process-pause`, `process-pause@^0.1`,
    /// `sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// A pause in this lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Span>,
    /// A probe to run once at this point of the lane (a probe action): a hub reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// The component's parameters (checked against its schema and its `validate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// How long to hold the fault (fault steps; required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Span>,
    /// How much this fault counts in the resilience score, 0 to 10 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub weight: Option<u8>,
    /// What the fault acts on; each resolved target gets its own run of the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// A probe action's deadline per attempt (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    /// A probe action's attempts (default 1, at most 100); see [`ProbeSpec::attempts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::ATTEMPTS))]
    pub attempts: Option<u32>,
    /// A probe action that fails ends the run (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_failure: Option<bool>,
}

/// What a fault acts on. Process criteria (`pids`, `names`, `cmdlines`) select processes (a
/// process matching any of them); with `cgroup` too, only those inside it. `cgroup` alone
/// targets the cgroup; `netns` and `interfaces` target a network namespace's interfaces.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Process ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Exact process names (`/proc/<pid>/comm`, at most 15 bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Regular expressions over the command line (arguments joined by spaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdlines: Vec<String>,
    /// A cgroup path from the cgroup root, starting with `/` (`/faultline-demo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// A network namespace under `/run/netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Network interfaces (in `netns`, or the host's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// The blast radius: how many of the matching processes (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
    /// What an empty selection does: `fail` the pre-run check (default) or `skip` the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_empty: Option<OnEmpty>,
}

/// The blast radius of a process target: `all`, `{ count: N }` or `{ percent: P }`.
#[derive(Debug, Clone, Copy, PartialEq, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Select {
    /// Every matching process.
    All,
    /// At most N of them (the N lowest pids), N ≥ 1.
    Count(u32),
    /// P percent of them, 0 < P ≤ 100, rounded up (so 10 % of 3 processes is 1), the lowest
    /// pids first.
    Percent(f64),
}

// Written by hand: the YAML library reads and writes an enum with data only as a YAML tag
// (`!count 3`), but the file writes it as a one-key map, in YAML as in JSON.
impl Serialize for Select {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = match self {
            Select::All => return s.serialize_str("all"),
            _ => s.serialize_map(Some(1))?,
        };
        match self {
            Select::Count(n) => map.serialize_entry("count", n)?,
            Select::Percent(p) => map.serialize_entry("percent", p)?,
            Select::All => {}
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Select {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Select, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Select;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all`, `{ count: N }` or `{ percent: P }`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Select, E> {
                match v {
                    "all" => Ok(Select::All),
                    other => Err(E::unknown_variant(other, &["all", "count", "percent"])),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Select, A::Error> {
                use serde::de::Error as _;
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let select = match key.as_str() {
                    "count" => Select::Count(map.next_value()?),
                    "percent" => Select::Percent(map.next_value()?),
                    other => return Err(A::Error::unknown_variant(other, &["count", "percent"])),
                };
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom(
                        "`select` has one key: `count` or `percent`",
                    ));
                }
                Ok(select)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// What an empty target selection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnEmpty {
    /// Refuse to start the run (the default).
    Fail,
    /// Skip the step (status `skipped`).
    Skip,
}

/// When a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// Once, before any fault (the steady state).
    StartOfTest,
    /// Once, after every lane has ended and every fault was reverted.
    EndOfTest,
    /// Once before the faults and once after.
    Edge,
    /// Every `interval`, from start to end.
    Continuous,
    /// Every `interval`, only while at least one fault is injected.
    OnChaos,
}

impl ProbeMode {
    /// The file's word for it (`start-of-test`, `on-chaos`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::StartOfTest => "start-of-test",
            ProbeMode::EndOfTest => "end-of-test",
            ProbeMode::Edge => "edge",
            ProbeMode::Continuous => "continuous",
            ProbeMode::OnChaos => "on-chaos",
        }
    }
}

/// A probe of the experiment: a check of the system, at points of the run or continuously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// A name, unique among the probes and distinct from every step's.
    #[schemars(length(min = 1, max = limits::NAME))]
    pub name: String,
    /// The probe component: a hub reference (`http-probe@^0.1`, `sha256:<hex>`).
    pub probe: String,
    /// Its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// When it runs.
    pub mode: ProbeMode,
    /// The deadline of one attempt (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    /// Continuous and on-chaos: time between checks (default 1s, at least 50ms); every mode:
    /// the pause between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Span>,
    /// Attempts per check (default 1, at most 100). One attempt is one call of the probe's
    /// `check`; a check passes as soon as one attempt passes, fails when every attempt failed,
    /// and is not applicable when the last attempt could not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::ATTEMPTS))]
    pub attempts: Option<u32>,
    /// Wait this long after the probe's first moment before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Span>,
    /// A failed check ends the run at once: every fault reverted, later steps skipped.
    #[serde(default)]
    pub stop_on_failure: bool,
    /// Continuous and on-chaos: the percentage of checks that must pass for the probe to pass
    /// (default 100); more than 0, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100), extend("exclusiveMinimum" = 0))]
    pub success_rate: Option<f64>,
    /// The fault steps this probe judges in the resilience score (default: every fault step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<String>>,
}

impl Experiment {
    /// The name of lane `i` (0-based): its own, or `lane-<i+1>`.
    pub fn lane_name(&self, i: usize) -> String {
        self.lanes
            .get(i)
            .and_then(|l| l.name.clone())
            .unwrap_or_else(|| format!("lane-{}", i + 1))
    }

    /// The name of step `j` of lane `i` (0-based): its own, or `<lane>-<j+1>`.
    pub fn step_name(&self, i: usize, j: usize) -> String {
        self.lanes
            .get(i)
            .and_then(|l| l.steps.get(j))
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("{}-{}", self.lane_name(i), j + 1))
    }
}
