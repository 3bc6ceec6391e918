//! A probe that misbehaves on request, for the verdict tests: each `mode` is one way a check
//! can end (passed, failed, the contract's error, a denied host call, a trap, a hang, a memory
//! bomb).

use faultline_sdk::{Capability, Error, Outcome, Probe, ProbeContext, command};
use schemars::JsonSchema;
use serde::Deserialize;

/// How `check` ends.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// An outcome with `ok: true`.
    #[default]
    Pass,
    /// An outcome with `ok: false`.
    Fail,
    /// The contract's `failed` error.
    Error,
    /// Runs `/usr/bin/true` through `command`, which no test grant allows: the host's denial.
    Denied,
    /// Panic (a trap).
    Trap,
    /// Loop forever.
    Loop,
    /// Allocate until memory runs out.
    Bomb,
}

#[derive(Deserialize, JsonSchema)]
struct Params {
    #[serde(default)]
    mode: Mode,
}

struct MisbehaveProbe;

impl Probe for MisbehaveProbe {
    type Params = Params;
    const SUMMARY: &'static str = "test fixture: a probe that ends as its parameters say";
    const CAPABILITIES: &'static [Capability] = &[];

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let outcome = |ok: bool| Outcome {
            ok,
            message: format!("deliberately ok = {ok}"),
            value: Some(1.0),
        };
        match params.mode {
            Mode::Pass => Ok(outcome(true)),
            Mode::Fail => Ok(outcome(false)),
            Mode::Error => Err(Error::failed("misbehave-probe: deliberate error")),
            Mode::Denied => {
                command::run("/usr/bin/true", &[], 1000)?;
                Ok(outcome(true))
            }
            Mode::Trap => panic!("misbehave-probe: deliberate panic"),
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Bomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
        }
    }
}

faultline_sdk::export_probe!(MisbehaveProbe);
