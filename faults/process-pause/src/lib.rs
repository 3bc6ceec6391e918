//! `process-pause`: stops target processes with SIGSTOP; revert continues them with SIGCONT.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, process, rollback};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `process-pause`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes.
    #[serde(flatten)]
    target: process::Target,
    /// Pause at most this many of the matching processes; 0 pauses all of them.
    #[serde(default)]
    max_targets: u32,
}

/// The host's changes (one per paused process), undone on revert.
#[derive(Serialize, Deserialize)]
struct State {
    changes: Vec<u64>,
    pids: Vec<u32>,
}

struct ProcessPause;

impl Fault for ProcessPause {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str =
        "Pauses processes (SIGSTOP) for the fault's duration and resumes them (SIGCONT) on revert";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Process];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let targets = params.target.find(params.max_targets)?;
        let mut state = State {
            changes: Vec::new(),
            pids: Vec::new(),
        };
        for target in targets {
            match process::send_signal(target.pid, process::Signal::Stop) {
                Ok(change) => {
                    state.changes.extend(change);
                    state.pids.push(target.pid);
                    log::info(format!("paused {} ({})", target.pid, target.name));
                }
                Err(e) => {
                    // Leave nothing half-done: resume what was already paused.
                    let _ = rollback::undo_all(&state.changes);
                    return Err(e);
                }
            }
        }
        Ok(state)
    }

    fn revert(state: State) -> Result<(), Error> {
        rollback::undo_all(&state.changes)?;
        log::info(format!("resumed {:?}", state.pids));
        Ok(())
    }
}

faultline_sdk::export_fault!(ProcessPause);
