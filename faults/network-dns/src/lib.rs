//! `network-dns`: makes DNS fail by rejecting queries (UDP and TCP port 53) to the chosen
//! servers; revert lets them through again.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `network-dns`: the traffic parameters alone; `destinations` are the DNS
/// servers (empty: every server). Ports and protocol are DNS's own, so they are not taken.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The DNS traffic to break.
    #[serde(flatten)]
    traffic: network::TrafficParams,
}

struct NetworkDns;

impl Fault for NetworkDns {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "Makes DNS queries fail at once (port 53 rejected)";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic()?;
        if !params.traffic.ports.is_empty()
            || params.traffic.protocol != network::ProtocolParam::Any
        {
            return Err(Error::invalid(
                "`ports` and `protocol` do not apply: DNS is UDP and TCP port 53",
            ));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let change = network::fail_dns(&traffic)?;
        log::info(format!(
            "rejecting DNS on {:?} to {:?}",
            traffic.interfaces, traffic.destinations
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkDns);
