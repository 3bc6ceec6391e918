//! A fault that misbehaves on request: after pausing a real process (a change the host must
//! undo whatever happens next), `inject` and `revert` do what the parameters say.

use faultline_sdk::{Capability, Error, Fault, InjectContext, process, rollback};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a phase misbehaves.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Behave.
    #[default]
    Ok,
    /// Panic (a trap).
    Trap,
    /// Loop forever.
    Loop,
    /// Allocate until memory runs out.
    Bomb,
    /// Return success and do nothing (a lying revert).
    Noop,
    /// Return the contract's error.
    Fail,
}

#[derive(Deserialize, JsonSchema)]
struct Params {
    /// A process to pause first (optional).
    pid: Option<u32>,
    #[serde(default)]
    inject: Mode,
    #[serde(default)]
    revert: Mode,
    /// Log lines `inject` writes before it returns: host calls to time (the host bench).
    #[serde(default)]
    logs: u32,
}

#[derive(Serialize, Deserialize)]
struct State {
    changes: Vec<u64>,
    revert: Mode,
}

fn misbehave(mode: Mode) -> Result<(), Error> {
    match mode {
        Mode::Ok | Mode::Noop => Ok(()),
        Mode::Trap => panic!("misbehave: deliberate panic"),
        Mode::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mode::Bomb => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Mode::Fail => Err(Error::failed("misbehave: deliberate error")),
    }
}

struct Misbehave;

impl Fault for Misbehave {
    type Params = Params;
    type State = State;
    const SUMMARY: &'static str = "test fixture: pauses a process, then misbehaves on request";
    const CAPABILITIES: &'static [Capability] = &[Capability::Process, Capability::Rollback];

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let mut changes = Vec::new();
        if let Some(pid) = params.pid {
            changes.extend(process::send_signal(pid, process::Signal::Stop)?);
        }
        for _ in 0..params.logs {
            faultline_sdk::log::info("misbehave: a line");
        }
        misbehave(params.inject)?;
        Ok(State {
            changes,
            revert: params.revert,
        })
    }

    fn revert(state: State) -> Result<(), Error> {
        misbehave(state.revert)?;
        if state.revert == Mode::Noop {
            return Ok(());
        }
        rollback::undo_all(&state.changes)
    }
}

faultline_sdk::export_fault!(Misbehave);
