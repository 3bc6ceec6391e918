//! `process-kill`: sends a signal (SIGKILL by default) to target processes. A kill cannot be
//! undone: `describe` says so, and revert has nothing to do.

use faultline_sdk::{Capability, Error, Fault, InjectContext, log, process};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signal to send.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum SignalName {
    /// SIGKILL: cannot be caught.
    #[default]
    Kill,
    /// SIGTERM: asks the process to exit.
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Hup,
}

/// Parameters of `process-kill`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes.
    #[serde(flatten)]
    target: process::Target,
    /// The signal to send.
    #[serde(default)]
    signal: SignalName,
    /// Signal at most this many of the matching processes; 0 signals all of them.
    #[serde(default)]
    max_targets: u32,
}

/// The processes that were signalled, for the record.
#[derive(Serialize, Deserialize)]
struct State {
    pids: Vec<u32>,
}

struct ProcessKill;

impl Fault for ProcessKill {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str = "Kills processes with a signal (SIGKILL by default)";
    const CAPABILITIES: &'static [Capability] = &[Capability::Log, Capability::Process];
    const REVERTIBLE: bool = false;

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let targets = params.target.find(params.max_targets)?;
        let signal = match params.signal {
            SignalName::Kill => process::Signal::Kill,
            SignalName::Term => process::Signal::Term,
            SignalName::Int => process::Signal::Int,
            SignalName::Quit => process::Signal::Quit,
            SignalName::Hup => process::Signal::Hup,
        };
        let mut pids = Vec::new();
        for target in targets {
            process::send_signal(target.pid, signal)?;
            log::info(format!("signalled {} ({})", target.pid, target.name));
            pids.push(target.pid);
        }
        Ok(State { pids })
    }

    fn revert(state: State) -> Result<(), Error> {
        log::warn(format!(
            "a kill cannot be undone; processes {:?} stay signalled",
            state.pids
        ));
        Ok(())
    }
}

faultline_sdk::export_fault!(ProcessKill);
