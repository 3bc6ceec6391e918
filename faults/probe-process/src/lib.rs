//! `probe-process`: passes when at least `min_count` processes match the selector and none of
//! them is stopped or a zombie.

use faultline_sdk::{Capability, Error, Outcome, Probe, ProbeContext, process};
use schemars::JsonSchema;
use serde::Deserialize;

fn one() -> u32 {
    1
}

/// Parameters of `probe-process`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes.
    #[serde(flatten)]
    target: process::Target,
    /// How many matching processes must be running.
    #[serde(default = "one")]
    min_count: u32,
}

struct ProbeProcess;

impl Probe for ProbeProcess {
    type Params = Params;

    const SUMMARY: &'static str = "Checks that matching processes are running";
    const CAPABILITIES: &'static [Capability] = &[Capability::Process];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector().map(|_| ())
    }

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let found = process::find(&params.target.selector()?)?;
        let running = found
            .iter()
            .filter(|p| p.state != "T" && p.state != "t" && p.state != "Z");
        let running: Vec<u32> = running.map(|p| p.pid).collect();
        let ok = running.len() as u32 >= params.min_count;
        Ok(Outcome {
            ok,
            message: format!(
                "{} of {} matching processes running, {} required",
                running.len(),
                found.len(),
                params.min_count
            ),
            value: Some(running.len() as f64),
        })
    }
}

faultline_sdk::export_probe!(ProbeProcess);
