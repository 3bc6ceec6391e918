//! `network-dns`: makes DNS fail, for every name or chosen ones. By default (0.1.0's behaviour)
//! queries to the chosen servers are rejected at once (UDP and TCP port 53); with `failure`
//! `nxdomain` or `servfail` matching UDP queries get that answer in the server's place, with
//! `timeout` they get none. Revert lets every query through again.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// How the queries fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Failure {
    /// Refused at once (ICMP port unreachable, TCP reset), UDP and TCP, every name: 0.1.0's
    /// behaviour.
    Reject,
    /// Answered "no such name" (rcode 3).
    Nxdomain,
    /// Answered "server failure" (rcode 2).
    Servfail,
    /// Not answered: the resolver times out.
    Timeout,
}

/// Parameters of `network-dns`. `destinations` are the DNS servers (empty: every server).
/// Ports and protocol are DNS's own, so they are not taken.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The DNS traffic to break.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// Names whose queries fail: exact (`db.internal`) or every name below a suffix
    /// (`*.internal`), case-insensitive; empty (the default) means every name. At most 256.
    #[serde(default)]
    names: Vec<String>,
    /// `reject`, `nxdomain`, `servfail` or `timeout`. Default: `reject` (0.1.0's behaviour)
    /// without `names`, `nxdomain` with them.
    failure: Option<Failure>,
}

impl Params {
    fn failure(&self) -> Failure {
        self.failure.unwrap_or(if self.names.is_empty() {
            Failure::Reject
        } else {
            Failure::Nxdomain
        })
    }
}

struct NetworkDns;

impl Fault for NetworkDns {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str =
        "Makes DNS fail for every name or chosen ones: rejected, NXDOMAIN, SERVFAIL or no answer";
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
        if params.names.len() > 256 {
            return Err(Error::invalid(format!(
                "`names` has {} entries; at most 256",
                params.names.len()
            )));
        }
        if params.failure() == Failure::Reject && !params.names.is_empty() {
            return Err(Error::invalid(
                "failure `reject` refuses every name; for chosen `names` pick `nxdomain`, \
                 `servfail` or `timeout`",
            ));
        }
        // The names themselves are checked by the host (length, labels), which says which
        // one is wrong.
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let failure = params.failure();
        let change = match failure {
            Failure::Reject => network::fail_dns(&traffic)?,
            Failure::Nxdomain => {
                network::fail_dns_names(&traffic, &params.names, network::DnsFailure::Nxdomain)?
            }
            Failure::Servfail => {
                network::fail_dns_names(&traffic, &params.names, network::DnsFailure::Servfail)?
            }
            Failure::Timeout => {
                network::fail_dns_names(&traffic, &params.names, network::DnsFailure::Timeout)?
            }
        };
        let which = if params.names.is_empty() {
            "every name".to_string()
        } else {
            format!("{:?}", params.names)
        };
        log::info(format!(
            "dns {failure:?} for {which} on {:?} to {:?}",
            traffic.interfaces, traffic.destinations
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(NetworkDns);
