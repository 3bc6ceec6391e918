//! `process-kill`: sends a signal (SIGKILL by default) to target processes. Graceful mode sends
//! the signal (SIGTERM by default there), waits `grace_period`, then SIGKILLs whatever is still
//! alive; interval mode does it again every `interval` to the processes that match then (those
//! a supervisor restarted). The waiting is done by ticks, never inside a call. A kill cannot be
//! undone: `describe` says so, and revert has nothing to do.

use faultline_sdk::{
    Capability, Error, Fault, HumanDuration, InjectContext, TickContext, Ticking, log, process,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The shortest `interval`: the host ticks at most every 10 ms, and a supervisor needs time to
/// restart what was killed.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `grace_period` or `interval`: a day.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A signal to send.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SignalName {
    /// SIGKILL: cannot be caught.
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

impl SignalName {
    fn signal(self) -> process::Signal {
        match self {
            SignalName::Kill => process::Signal::Kill,
            SignalName::Term => process::Signal::Term,
            SignalName::Int => process::Signal::Int,
            SignalName::Quit => process::Signal::Quit,
            SignalName::Hup => process::Signal::Hup,
        }
    }
}

/// Parameters of `process-kill` (those of 0.1 keep their meaning).
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The target processes.
    #[serde(flatten)]
    target: process::Target,
    /// The signal to send: `kill` by default, `term` by default with a `grace_period`.
    #[serde(default)]
    signal: Option<SignalName>,
    /// Signal at most this many of the matching processes (each round); 0 signals all of them.
    #[serde(default)]
    max_targets: u32,
    /// Graceful mode: after `signal`, wait this long (`"10s"`), then SIGKILL the processes that
    /// are still alive.
    #[serde(default)]
    grace_period: Option<HumanDuration>,
    /// Interval mode: kill again every `interval` (`"30s"`, at least 100ms) whatever matches
    /// then, e.g. processes a supervisor restarted. A round that finds none is not an error.
    #[serde(default)]
    interval: Option<HumanDuration>,
}

impl Params {
    fn signal(&self) -> SignalName {
        self.signal.unwrap_or(match self.grace_period {
            Some(_) => SignalName::Term,
            None => SignalName::Kill,
        })
    }
}

/// A signalled process, by pid and start time (a reused pid is never killed), and when it gets
/// SIGKILL if it is still alive (milliseconds since inject returned).
#[derive(Serialize, Deserialize, Clone)]
struct Pending {
    pid: u32,
    start_time: u64,
    kill_at_ms: u64,
}

/// What the rounds need, and what they did.
#[derive(Serialize, Deserialize)]
struct State {
    target: Selector,
    signal: SignalName,
    max_targets: u32,
    grace_ms: Option<u64>,
    interval_ms: Option<u64>,
    /// When the next round is due, in milliseconds since inject returned.
    next_round_ms: u64,
    /// Processes waiting out their grace period.
    pending: Vec<Pending>,
    /// Every process signalled so far, for the record.
    pids: Vec<u32>,
    /// Processes the grace period ended with a SIGKILL.
    killed_after_grace: Vec<u32>,
}

/// The selector, kept in the state for later rounds.
#[derive(Serialize, Deserialize, Clone)]
enum Selector {
    Pid(u32),
    Name(String),
    Cmdline(String),
}

impl Selector {
    fn of(target: &process::Target) -> Result<Selector, Error> {
        Ok(match target.selector()? {
            process::Selector::Pid(p) => Selector::Pid(p),
            process::Selector::Name(n) => Selector::Name(n),
            process::Selector::Cmdline(c) => Selector::Cmdline(c),
            process::Selector::Cgroup(_) => return Err(Error::invalid("cgroup targets")),
        })
    }

    fn host(&self) -> process::Selector {
        match self {
            Selector::Pid(p) => process::Selector::Pid(*p),
            Selector::Name(n) => process::Selector::Name(n.clone()),
            Selector::Cmdline(c) => process::Selector::Cmdline(c.clone()),
        }
    }
}

struct ProcessKill;

impl Fault for ProcessKill {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str = "Kills processes with a signal (SIGKILL by default); gracefully \
        (TERM, a grace period, then KILL) or again every interval";
    const CAPABILITIES: &'static [Capability] = &[Capability::Log, Capability::Process];
    const REVERTIBLE: bool = false;

    fn validate(params: &Params) -> Result<(), Error> {
        params.target.selector()?;
        if let Some(grace) = params.grace_period {
            if grace.get() > MAX_WAIT {
                return Err(Error::invalid(format!(
                    "`grace_period` must be at most 1day, not {grace}"
                )));
            }
            if params.signal == Some(SignalName::Kill) {
                return Err(Error::invalid(
                    "`grace_period` with `signal: kill` has nothing to wait for: use `term`",
                ));
            }
        }
        if let Some(every) = params.interval
            && !(MIN_INTERVAL..=MAX_WAIT).contains(&every.get())
        {
            return Err(Error::invalid(format!(
                "`interval` must be 100ms to 1day, not {every}"
            )));
        }
        Ok(())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let mut state = State {
            target: Selector::of(&params.target)?,
            signal: params.signal(),
            max_targets: params.max_targets,
            grace_ms: params.grace_period.map(HumanDuration::as_millis),
            interval_ms: params.interval.map(HumanDuration::as_millis),
            next_round_ms: 0,
            pending: Vec::new(),
            pids: Vec::new(),
            killed_after_grace: Vec::new(),
        };
        // The first round must find someone, as in 0.1: a typo in the selector is an error.
        let targets = params.target.find(params.max_targets)?;
        round(&mut state, targets, 0)?;
        state.next_round_ms = state.interval_ms.unwrap_or(u64::MAX);
        Ok(state)
    }

    fn revert(state: State) -> Result<(), Error> {
        log::warn(format!(
            "a kill cannot be undone; processes {:?} stay signalled",
            state.pids
        ));
        Ok(())
    }
}

impl Ticking for ProcessKill {
    fn tick(state: &mut State, context: &TickContext) -> Result<Option<Duration>, Error> {
        let now = u64::try_from(context.elapsed.as_millis()).unwrap_or(u64::MAX);
        let due: Vec<Pending> = state
            .pending
            .iter()
            .filter(|p| p.kill_at_ms <= now)
            .cloned()
            .collect();
        state.pending.retain(|p| p.kill_at_ms > now);
        for p in due {
            if process::alive(p.pid, p.start_time)? {
                match process::send_signal(p.pid, process::Signal::Kill) {
                    Ok(_) => {
                        log::info(format!("{} outlived its grace period: SIGKILL sent", p.pid));
                        state.killed_after_grace.push(p.pid);
                    }
                    Err(Error::TargetGone(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if state.interval_ms.is_some() && state.next_round_ms <= now {
            let found = process::find(&state.target.host())?;
            let mut fresh: Vec<process::ProcessInfo> = found
                .into_iter()
                .filter(|f| f.state != "Z" && !state.pending.iter().any(|p| p.pid == f.pid))
                .collect();
            if state.max_targets > 0 {
                fresh.truncate(state.max_targets as usize);
            }
            if fresh.is_empty() {
                log::debug("no matching process this round");
            }
            round(state, fresh, now)?;
            state.next_round_ms = now.saturating_add(state.interval_ms.unwrap_or(u64::MAX));
        }
        let next = state
            .pending
            .iter()
            .map(|p| p.kill_at_ms)
            .chain(state.interval_ms.map(|_| state.next_round_ms))
            .min();
        Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now))))
    }
}

/// Signals `targets` at `now` (ms since inject returned); with a grace period, they are
/// SIGKILLed once it is over.
fn round(state: &mut State, targets: Vec<process::ProcessInfo>, now: u64) -> Result<(), Error> {
    for target in targets {
        match process::send_signal(target.pid, state.signal.signal()) {
            Ok(_) => {}
            // Gone between find and signal: nothing left to kill.
            Err(Error::TargetGone(_)) => continue,
            Err(e) => return Err(e),
        }
        log::info(format!("signalled {} ({})", target.pid, target.name));
        state.pids.push(target.pid);
        if let Some(grace) = state.grace_ms {
            state.pending.push(Pending {
                pid: target.pid,
                start_time: target.start_time,
                kill_at_ms: now.saturating_add(grace),
            });
        }
    }
    Ok(())
}

faultline_sdk::export_ticking_fault!(ProcessKill);
