//! `network-tcp-reset`: resets TCP connections to chosen ports. Every segment the namespace
//! sends to those ports is answered with a TCP reset in the peer's place (the host's `reject`
//! call, nftables `reject with tcp reset` in the output hook): a connection that was open
//! before injection fails with ECONNRESET on its next send or acknowledgement, and new
//! connects are refused. Revert lets them through again.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `network-tcp-reset`: the traffic parameters, with `ports` required (the
/// server ports whose connections are reset). The protocol is TCP, so it is not taken.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The connections to reset: egress on `interfaces` to `destinations` (empty: every
    /// destination) and `ports` (at least one).
    #[serde(flatten)]
    traffic: network::TrafficParams,
}

struct NetworkTcpReset;

impl Fault for NetworkTcpReset {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str =
        "Resets established TCP connections to chosen ports and refuses new ones";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Network];

    fn validate(params: &Params) -> Result<(), Error> {
        tcp_traffic(params).map(drop)
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = tcp_traffic(&params)?;
        let change = network::reject(&traffic)?;
        log::info(format!(
            "resetting tcp on {:?} to {:?} ports {:?}",
            traffic.interfaces, traffic.destinations, params.traffic.ports
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

/// The traffic, always TCP, with at least one port.
fn tcp_traffic(params: &Params) -> Result<network::Traffic, Error> {
    if params.traffic.protocol != network::ProtocolParam::Any
        && params.traffic.protocol != network::ProtocolParam::Tcp
    {
        return Err(Error::invalid(
            "`protocol` does not apply: connections reset are TCP",
        ));
    }
    if params.traffic.ports.is_empty() {
        return Err(Error::invalid(
            "`ports` must name at least one port, e.g. [\"5432\"] or [\"8000-8100\"]",
        ));
    }
    let mut traffic = params.traffic.traffic()?;
    traffic.protocol = network::Protocol::Tcp;
    Ok(traffic)
}

faultline_sdk::export_fault!(NetworkTcpReset);
