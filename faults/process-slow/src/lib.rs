//! `process-slow`: a duty cycle on target processes — paused (SIGSTOP) for `pause_ms`, running
//! for `run_ms`, over and over while the fault is held — so they get `run_ms / (pause_ms +
//! run_ms)` of the CPU time they would otherwise use. Each pause is a journalled change, undone
//! (SIGCONT) when the cycle resumes them; revert resumes whatever is paused.

use faultline_sdk::{
    Capability, Error, Fault, InjectContext, TickContext, Ticking, log, process, rollback,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Shortest pause or run the cycle takes: the host ticks at most every 10 ms, and each
/// pause costs a journal write.
const MIN_MS: u32 = 10;
/// Longest pause or run: an hour.
const MAX_MS: u32 = 3_600_000;

fn default_pause_ms() -> u32 {
    200
}

fn default_run_ms() -> u32 {
    800
}

/// Parameters of `process-slow`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes.
    #[serde(flatten)]
    target: process::Target,
    /// How long each pause lasts, in milliseconds (10 to 3600000).
    #[serde(default = "default_pause_ms")]
    pause_ms: u32,
    /// How long the processes run between pauses, in milliseconds (10 to 3600000).
    #[serde(default = "default_run_ms")]
    run_ms: u32,
    /// Slow at most this many of the matching processes; 0 slows all of them.
    #[serde(default)]
    max_targets: u32,
}

/// A target, by pid and start time: a pid reused by another process is never paused.
#[derive(Serialize, Deserialize, Clone)]
struct Slowed {
    pid: u32,
    start_time: u64,
}

/// The cycle: who, how long each half lasts, and the pauses in force now.
#[derive(Serialize, Deserialize)]
struct State {
    targets: Vec<Slowed>,
    pause_ms: u32,
    run_ms: u32,
    /// Changes (one per paused process) of the pause in force; empty while running.
    paused: Vec<u64>,
    /// Pauses so far.
    cycles: u64,
}

struct ProcessSlow;

impl Fault for ProcessSlow {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str =
        "Slows processes with a pause/resume duty cycle (SIGSTOP for pause_ms, SIGCONT for run_ms)";
    const CAPABILITIES: &'static [Capability] =
        &[Capability::Log, Capability::Rollback, Capability::Process];

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector()?;
        for (name, ms) in [("pause_ms", params.pause_ms), ("run_ms", params.run_ms)] {
            if !(MIN_MS..=MAX_MS).contains(&ms) {
                return Err(Error::invalid(format!(
                    "`{name}` must be {MIN_MS} to {MAX_MS}, not {ms}"
                )));
            }
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let targets = params
            .target
            .find(params.max_targets)?
            .into_iter()
            .map(|p| Slowed {
                pid: p.pid,
                start_time: p.start_time,
            })
            .collect::<Vec<_>>();
        let share = f64::from(params.run_ms) / f64::from(params.run_ms + params.pause_ms);
        log::info(format!(
            "slowing {:?} to {:.0} % of their CPU time: paused {} ms, running {} ms",
            targets.iter().map(|t| t.pid).collect::<Vec<_>>(),
            share * 100.0,
            params.pause_ms,
            params.run_ms
        ));
        // The first pause comes with the first tick, right after inject returns.
        Ok(State {
            targets,
            pause_ms: params.pause_ms,
            run_ms: params.run_ms,
            paused: Vec::new(),
            cycles: 0,
        })
    }

    fn revert(state: State) -> Result<(), Error> {
        rollback::undo_all(&state.paused)?;
        log::info(format!(
            "resumed {:?} after {} pauses",
            state.targets.iter().map(|t| t.pid).collect::<Vec<_>>(),
            state.cycles
        ));
        Ok(())
    }
}

impl Ticking for ProcessSlow {
    fn tick(state: &mut State, _: &TickContext) -> Result<Option<Duration>, Error> {
        if !state.paused.is_empty() {
            rollback::undo_all(&state.paused)?;
            state.paused.clear();
            return Ok(Some(Duration::from_millis(u64::from(state.run_ms))));
        }
        pause(state)?;
        if state.targets.is_empty() {
            log::warn("every target has exited: nothing left to slow");
            return Ok(None);
        }
        state.cycles += 1;
        Ok(Some(Duration::from_millis(u64::from(state.pause_ms))))
    }
}

/// Pauses every target still alive; forgets those that exited. On a failure, resumes what this
/// pause stopped already, so a failed tick leaves nothing paused.
fn pause(state: &mut State) -> Result<(), Error> {
    let mut alive = Vec::with_capacity(state.targets.len());
    for t in std::mem::take(&mut state.targets) {
        if !process::alive(t.pid, t.start_time)? {
            log::info(format!("process {} has exited", t.pid));
            continue;
        }
        match process::send_signal(t.pid, process::Signal::Stop) {
            Ok(change) => {
                state.paused.extend(change);
                alive.push(t);
            }
            Err(Error::TargetGone(_)) => log::info(format!("process {} has exited", t.pid)),
            Err(e) => {
                let _ = rollback::undo_all(&state.paused);
                state.paused.clear();
                return Err(e);
            }
        }
    }
    state.targets = alive;
    Ok(())
}

faultline_sdk::export_ticking_fault!(ProcessSlow);
