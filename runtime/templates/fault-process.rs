//! `{{name}}`: pauses processes (SIGSTOP) for the fault's duration; revert resumes them.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, process, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters: they become the fault's JSON Schema, which the host checks before `validate`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes: `pid`, `name` or `cmdline`.
    #[serde(flatten)]
    target: process::Target,
    /// Pause at most this many of them; 0 pauses all.
    #[serde(default)]
    max_targets: u32,
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
        params.target.selector().map(|_| ())
    }

    /// Acts and returns at once: the host holds the fault for its duration, then reverts.
    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let mut changes = Vec::new();
        for p in params.target.find(params.max_targets)? {
            changes.extend(process::send_signal(p.pid, process::Signal::Stop)?);
            log::info(format!("paused {} ({})", p.pid, p.name));
        }
        Ok(changes)
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
    fn pauses_the_matching_processes_and_resumes_them() {
        let host = MockHost::new()
            .process(4242, "app-worker", &["/usr/bin/app-worker", "--queue", "orders"])
            .process(4343, "other", &["/usr/bin/other"]);
        let state = host
            .inject::<{{Type}}>(serde_json::json!({ "name": "app-worker" }))
            .unwrap();
        assert_eq!(host.process_state(4242).as_deref(), Some("T"));
        assert_eq!(host.process_state(4343).as_deref(), Some("S"));
        assert_eq!(host.calls_to("process/send-signal").len(), 1);

        host.revert::<{{Type}}>(state).unwrap();
        assert_eq!(host.process_state(4242).as_deref(), Some("S"));
        assert!(host.outstanding().is_empty(), "revert left {:?}", host.outstanding());
    }

    #[test]
    fn no_matching_process_is_an_error_and_changes_nothing() {
        let host = MockHost::new();
        let e = host
            .inject::<{{Type}}>(serde_json::json!({ "name": "missing" }))
            .unwrap_err();
        assert!(matches!(e, Error::TargetGone(_)), "{e:?}");
        assert!(host.outstanding().is_empty());
    }

    #[test]
    fn two_selectors_are_refused_by_validate() {
        let host = MockHost::new();
        let e = host
            .validate::<{{Type}}>(serde_json::json!({ "pid": 1, "name": "x" }))
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    }
}
