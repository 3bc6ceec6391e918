//! `network-delay`: delays egress packets by `delay_ms` ± `jitter_ms`; revert removes the delay.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `network-delay`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The traffic to delay.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// Added one-way delay in milliseconds (1 to 60000).
    #[serde(default = "default_delay")]
    delay_ms: u32,
    /// Maximum deviation either side of `delay_ms`, in milliseconds (at most `delay_ms`).
    #[serde(default)]
    jitter_ms: u32,
}

fn default_delay() -> u32 {
    100
}

struct NetworkDelay;

impl Fault for NetworkDelay {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Delays egress packets by a fixed time plus jitter";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic()?;
        if !(1..=60_000).contains(&params.delay_ms) {
            return Err(Error::invalid(format!(
                "`delay_ms` must be 1 to 60000, not {}",
                params.delay_ms
            )));
        }
        if params.jitter_ms > params.delay_ms {
            return Err(Error::invalid(format!(
                "`jitter_ms` ({}) must not exceed `delay_ms` ({})",
                params.jitter_ms, params.delay_ms
            )));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let change = network::add_delay(&traffic, params.delay_ms, params.jitter_ms)?;
        log::info(format!(
            "delaying egress on {:?} by {} ± {} ms",
            traffic.interfaces, params.delay_ms, params.jitter_ms
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkDelay);
