//! `network-blackhole`: drops (silently) or rejects (at once) matching egress traffic; revert
//! lets it through again.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// What happens to the matching packets.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Dropped without a word: connections time out.
    #[default]
    Drop,
    /// Refused: TCP reset, ICMP port unreachable otherwise; connections fail at once.
    Reject,
}

/// Parameters of `network-blackhole`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The traffic to cut.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// `drop` (time out) or `reject` (refuse at once).
    #[serde(default)]
    mode: Mode,
}

struct NetworkBlackhole;

impl Fault for NetworkBlackhole {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Drops or rejects every matching egress packet";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let change = match params.mode {
            Mode::Drop => network::blackhole(&traffic)?,
            Mode::Reject => network::reject(&traffic)?,
        };
        log::info(format!(
            "{:?} on egress of {:?} to {:?}",
            params.mode, traffic.interfaces, traffic.destinations
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkBlackhole);
