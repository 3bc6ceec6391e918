//! `{{name}}`: delays egress packets for the fault's duration; revert removes the delay.

use faultline_sdk::{Capability, Error, Fault, HumanDuration, InjectContext, log, network, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

fn hundred_ms() -> HumanDuration {
    HumanDuration::from_millis(100)
}

/// Parameters: they become the fault's JSON Schema, which the host checks before `validate`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// Which traffic: namespace (`netns` or `pid`), `interfaces`, `destinations`, `ports`,
    /// `protocol`.
    #[serde(flatten)]
    traffic: network::TrafficParams,
    /// How long each packet is held, e.g. `"100ms"`.
    #[serde(default = "hundred_ms")]
    delay: HumanDuration,
}

struct {{Type}};

impl Fault for {{Type}} {
    type Params = Params;
    /// The host's change ids: `revert` hands them back.
    type State = Vec<u64>;

    const SUMMARY: &'static str = "{{summary}}";
    const CAPABILITIES: &'static [Capability] = &[{{capabilities}}];

    /// Checks parameters beyond their types, with no side effects.
    fn validate(params: &Params) -> Result<(), Error> {
        params.traffic.traffic()?;
        let ms = params.delay.as_millis();
        if !(1..=60_000).contains(&ms) {
            return Err(Error::invalid(format!("`delay` must be 1ms to 60s, not {ms} ms")));
        }
        Ok(())
    }

    /// Acts and returns at once: the host holds the fault for its duration, then reverts.
    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let traffic = params.traffic.traffic()?;
        let ms = u32::try_from(params.delay.as_millis()).unwrap_or(u32::MAX);
        let change = network::add_delay(&traffic, ms, 0)?;
        log::info(format!("delaying egress on {:?} by {ms} ms", traffic.interfaces));
        Ok(vec![change])
    }

    /// Runs in a fresh instance with only the state `inject` returned.
    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_sdk::testing::MockHost;

    #[test]
    fn adds_one_delay_and_revert_removes_it() {
        let host = MockHost::new();
        let params = serde_json::json!({ "netns": "host", "interfaces": ["eth0"], "delay": "250ms" });
        let state = host.inject::<{{Type}}>(params).unwrap();
        let calls = host.calls_to("network/add-delay");
        assert_eq!(calls.len(), 1);
        assert!(calls[0].args.ends_with(", 250, 0"), "{}", calls[0].args);
        assert_eq!(host.outstanding().len(), 1);

        host.revert::<{{Type}}>(state).unwrap();
        assert!(host.outstanding().is_empty());
    }

    #[test]
    fn a_denied_call_comes_back_as_the_error() {
        let host = MockHost::new().fail("network/add-delay", Error::Denied("no grant".into()));
        let params = serde_json::json!({ "netns": "host", "interfaces": ["eth0"] });
        let e = host.inject::<{{Type}}>(params).unwrap_err();
        assert_eq!(e, Error::Denied("no grant".into()));
    }
}
