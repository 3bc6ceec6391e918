//! `{{name}}`: passes when at least `min` processes match the selector.

use faultline_sdk::{Capability, Error, Outcome, Probe, ProbeContext, process};
use schemars::JsonSchema;
use serde::Deserialize;

fn one() -> u32 {
    1
}

/// Parameters: they become the probe's JSON Schema, which the host checks before `validate`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The processes: `pid`, `name` or `cmdline`.
    #[serde(flatten)]
    target: process::Target,
    /// How many must be running.
    #[serde(default = "one")]
    min: u32,
}

struct {{Type}};

impl Probe for {{Type}} {
    type Params = Params;

    const SUMMARY: &'static str = "{{summary}}";
    const CAPABILITIES: &'static [Capability] = &[{{capabilities}}];

    /// Checks parameters beyond their types, with no side effects.
    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector().map(|_| ())
    }

    /// Checks once: too few processes fail the check; a denied lookup is an error.
    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let found = process::find(&params.target.selector()?)?;
        let running = found.iter().filter(|p| p.state != "Z").count();
        Ok(Outcome {
            ok: running >= params.min as usize,
            message: format!("{running} running, {} wanted", params.min),
            value: Some(running as f64),
        })
    }
}

faultline_sdk::export_probe!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_sdk::testing::MockHost;

    #[test]
    fn passes_with_enough_processes_and_fails_without() {
        let host = MockHost::new().process(10, "app-worker", &["app-worker"]);
        let outcome = host
            .check::<{{Type}}>(serde_json::json!({ "name": "app-worker" }))
            .unwrap();
        assert!(outcome.ok, "{}", outcome.message);
        let outcome = host
            .check::<{{Type}}>(serde_json::json!({ "name": "app-worker", "min": 2 }))
            .unwrap();
        assert!(!outcome.ok, "{}", outcome.message);
    }
}
