//! A ticking fault that misbehaves on request: `inject` pauses a real process (a change the
//! host must undo whatever happens next), then tick number `at` does what `tick` says.

use faultline_sdk::{
    Capability, Error, Fault, InjectContext, TickContext, Ticking, log, process, rollback,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the chosen tick misbehaves.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Behave: tick again after `every_ms`.
    #[default]
    Ok,
    /// Panic (a trap).
    Trap,
    /// Loop forever.
    Loop,
    /// Return the contract's error.
    Fail,
    /// Return 2 MiB of state.
    Huge,
    /// Ask for no more ticks.
    Done,
}

#[derive(Deserialize, JsonSchema)]
struct Params {
    /// A process to pause at inject (optional).
    pid: Option<u32>,
    /// What tick number `at` does.
    #[serde(default)]
    tick: Mode,
    /// Which tick misbehaves.
    #[serde(default)]
    at: u64,
    /// Milliseconds between ticks.
    #[serde(default = "every")]
    every_ms: u64,
}

fn every() -> u64 {
    50
}

#[derive(Serialize, Deserialize)]
struct State {
    changes: Vec<u64>,
    tick: Mode,
    at: u64,
    every_ms: u64,
    /// Ticks seen, as the fault counted them.
    seen: u64,
    pad: String,
}

struct Ticker;

impl Fault for Ticker {
    type Params = Params;
    type State = State;
    const SUMMARY: &'static str = "test fixture: pauses a process, then misbehaves in a tick";
    const CAPABILITIES: &'static [Capability] = &[Capability::Process, Capability::Rollback];

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let mut changes = Vec::new();
        if let Some(pid) = params.pid {
            changes.extend(process::send_signal(pid, process::Signal::Stop)?);
        }
        Ok(State {
            changes,
            tick: params.tick,
            at: params.at,
            every_ms: params.every_ms,
            seen: 0,
            pad: String::new(),
        })
    }

    fn revert(state: State) -> Result<(), Error> {
        log::info(format!("reverting after {} ticks", state.seen));
        rollback::undo_all(&state.changes)
    }
}

impl Ticking for Ticker {
    fn tick(state: &mut State, context: &TickContext) -> Result<Option<Duration>, Error> {
        state.seen += 1;
        let next = Some(Duration::from_millis(state.every_ms));
        if context.tick != state.at {
            return Ok(next);
        }
        match state.tick {
            Mode::Ok => Ok(next),
            Mode::Trap => panic!("ticking: deliberate panic in tick {}", context.tick),
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Fail => Err(Error::failed("ticking: deliberate error")),
            Mode::Huge => {
                state.pad = "x".repeat(2 << 20);
                Ok(next)
            }
            Mode::Done => Ok(None),
        }
    }
}

faultline_sdk::export_ticking_fault!(Ticker);
