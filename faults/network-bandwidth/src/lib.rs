//! `network-bandwidth`: caps egress bandwidth on the chosen traffic; revert removes the cap.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `network-bandwidth`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The traffic to throttle.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// The cap in kilobits (1000 bits) per second, 1 to 100000000.
    #[serde(default = "default_rate")]
    rate_kbit: u64,
}

fn default_rate() -> u64 {
    1000
}

struct NetworkBandwidth;

impl Fault for NetworkBandwidth {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Caps egress bandwidth to a rate in kbit/s";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic()?;
        if !(1..=100_000_000).contains(&params.rate_kbit) {
            return Err(Error::invalid(format!(
                "`rate_kbit` must be 1 to 100000000, not {}",
                params.rate_kbit
            )));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let change = network::limit_bandwidth(&traffic, params.rate_kbit)?;
        log::info(format!(
            "capping egress on {:?} to {} kbit/s",
            traffic.interfaces, params.rate_kbit
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkBandwidth);
