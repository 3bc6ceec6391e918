//! `network-duplication`: sends a share of egress packets twice; revert stops it.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `network-duplication`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The traffic to disturb.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// Share of matching packets affected, more than 0 and at most 100.
    #[serde(default = "default_percent")]
    percent: f32,
}

fn default_percent() -> f32 {
    10.0
}

struct NetworkDuplication;

impl Fault for NetworkDuplication {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Sends a share of egress packets twice";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic()?;
        network::check_percent("percent", params.percent)
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let change = network::add_duplication(&traffic, params.percent)?;
        log::info(format!(
            "network-duplication: {}% of egress on {:?}",
            params.percent, traffic.interfaces
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkDuplication);
