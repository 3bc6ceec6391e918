//! The `process` capability: find processes in scope, signal them, run stress workers.
//!
//! Scope: a process is in scope when any grant's process scope matches it (pid, name, cmdline
//! regex, user, cgroup subtree); pid 1, the agent, its ancestors and all their threads never
//! are. Operations are denied by default: a signal goes to a process only when a grant covering
//! it lists that signal, and stress workers start only when a grant lists their kind. The
//! journal's own undo (SIGCONT after a stop) is not a plug-in call and needs no grant.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub mod stress;

use super::{Backends, CapError, CapResult, Change, Context, GuestResult, Inverse};
use crate::contract::process::{
    Host, ProcessInfo, Selector, Signal, StressKind as ContractStress, StressSpec,
};
use crate::policy::{ProcessScope, Scoped, SignalName, StressKind};
use linux::ProcInfo;
use nix::sys::signal::Signal as NixSignal;
use regex::Regex;
use std::collections::{HashMap, HashSet};

impl Context {
    /// Why `p` is never in scope whatever the policy says, or `None`.
    fn protection(&self, p: &ProcInfo) -> Option<String> {
        linux::never_in_scope(p, &self.backends.protected_pids)
    }

    /// The grants whose process scope covers `p`. A thread is judged as the process it belongs
    /// to, since that is what a signal to it reaches.
    fn covering(&self, p: &ProcInfo) -> Vec<&Scoped<ProcessScope>> {
        let leader = (p.tgid != p.pid).then(|| linux::info(p.tgid)).flatten();
        let subject = leader.as_ref().unwrap_or(p);
        self.grants
            .process
            .iter()
            .filter(|s| s.scope.matches(subject).is_some())
            .collect()
    }

    /// Why `p` is outside this plug-in's process scope, or `None` when it is in scope.
    fn scope_denial(&self, p: &ProcInfo) -> Option<String> {
        if let Some(never) = self.protection(p) {
            return Some(never);
        }
        self.covering(p)
            .is_empty()
            .then(|| self.outside_scope(&format!("process {} ({})", p.pid, p.name)))
    }

    /// `Ok` when a grant that covers `p` allows `signal`; else a denial naming the signal and
    /// the grants that cover `p`.
    fn signal_granted(&self, p: &ProcInfo, signal: Signal) -> CapResult<()> {
        let wanted = signal_name(signal);
        let covering = self.covering(p);
        if covering.iter().any(|s| s.scope.signals.contains(&wanted)) {
            return Ok(());
        }
        let rules: Vec<&str> = covering.iter().map(|s| s.rule.as_str()).collect();
        Err(self.denial(format!(
            "{wanted} is not among the signals granted to {} ({})",
            self.grants.component,
            rules.join(", ")
        )))
    }

    /// Whether `p` is in this plug-in's process scope; `Err` names the rule that denies it
    /// (and the denial is logged).
    pub fn process_in_scope(&self, p: &ProcInfo) -> CapResult<()> {
        match self.scope_denial(p) {
            None => Ok(()),
            Some(reason) => Err(self.denial(reason)),
        }
    }

    /// Processes matching `selector` that are in scope.
    pub fn find_processes(&self, selector: &Selector) -> CapResult<Vec<ProcInfo>> {
        if let Selector::Pid(pid) = selector {
            // One process asked for by number: say why it is out of scope (a thread of the
            // agent, say) rather than "none found", which reads as "gone".
            let Some(p) = linux::info(*pid) else {
                return Ok(Vec::new());
            };
            self.process_in_scope(&p)?;
            return Ok(vec![p]);
        }
        let all = linux::list();
        let pattern = match selector {
            Selector::Cmdline(re) => {
                Some(Regex::new(re).map_err(|e| CapError::Invalid(format!("cmdline regex: {e}")))?)
            }
            _ => None,
        };
        let wanted = |p: &ProcInfo| match selector {
            Selector::Pid(_) => false,
            Selector::Name(n) => &p.name == n,
            Selector::Cmdline(_) => pattern
                .as_ref()
                .is_some_and(|re| !p.cmdline.is_empty() && re.is_match(&p.cmdline.join(" "))),
            Selector::Cgroup(c) => p.cgroups.iter().any(|pc| pc == c),
        };
        Ok(all
            .into_iter()
            .filter(|p| wanted(p) && self.scope_denial(p).is_none())
            .collect())
    }

    /// Sends a signal to a process in scope; a stop is journalled with its inverse.
    pub fn signal_process(&mut self, pid: u32, signal: Signal) -> CapResult<Option<u64>> {
        let Some(p) = linux::info(pid) else {
            return Err(CapError::TargetGone(format!(
                "process {pid} does not exist"
            )));
        };
        self.process_in_scope(&p)?;
        self.signal_granted(&p, signal)?;
        let sig = nix_signal(signal);
        if signal != Signal::Stop {
            linux::signal(pid, Some(p.start_time), sig)?;
            tracing::info!(pid, signal = %sig, plugin = %self.grants.component, "signalled");
            return Ok(None);
        }
        let token = rand::random::<u64>();
        let inverse = Inverse::Continue(Stopped {
            pid,
            start_time: p.start_time,
            token,
        });
        let summary = format!("SIGSTOP {pid} ({})", p.name);
        let backends = self.backends.clone();
        self.change(&summary, inverse, || {
            linux::signal(pid, Some(p.start_time), sig)?;
            backends.stops.hold(pid, p.start_time, token);
            Ok(())
        })
        .map(Some)
    }
}

impl Context {
    /// Starts the agent's own load workers, optionally in a granted cgroup; undoing kills the
    /// whole process group.
    pub fn start_stress_workers(&mut self, spec: StressSpec) -> CapResult<u64> {
        let granted = stress_name(spec.kind);
        if !self
            .grants
            .process
            .iter()
            .any(|s| s.scope.stress.contains(&granted))
        {
            return Err(self.denial(format!(
                "{granted} stress is not among the stress kinds granted to {} ({})",
                self.grants.component,
                self.grants.rules_text()
            )));
        }
        if spec.cgroup.is_some() && self.grants.cgroup.is_empty() {
            return Err(self.denied("every cgroup"));
        }
        let spec = stress::StressSpec {
            kind: match spec.kind {
                ContractStress::Cpu => stress::StressKind::Cpu,
                ContractStress::Memory => stress::StressKind::Memory,
                ContractStress::Io => stress::StressKind::Io,
            },
            workers: spec.workers,
            load_percent: spec.load_percent,
            memory_bytes: spec.memory_bytes,
            cgroup: spec.cgroup,
        };
        let backends = self.backends.clone();
        let cgroups = backends.cgroup.as_ref().map_err(|e| e.clone())?;
        // Spawned and placed but held at their start gate: the inverse is journalled before
        // any worker loads the host (inverse first, as for every other change).
        let gated = stress::spawn_gated(
            &spec,
            &backends.worker_exe,
            cgroups,
            &self.grants.cgroup,
            |_, _| Ok(()),
        )?;
        let summary = format!(
            "{} {:?} stress worker(s), process group {}",
            spec.workers, spec.kind, gated.inverse.pgid
        );
        self.change(&summary, Inverse::Stress(gated.inverse.clone()), || {
            gated.release()
        })
    }
}

/// A process this host stopped: the pid and its start time (against pid reuse).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stopped {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Names this stop among others of the same process (0 in journals written before it).
    #[serde(default)]
    pub token: u64,
}

/// The stops this agent holds on each process. Two faults may stop one process (a
/// `process-pause` while `process-slow` cycles it): undoing one must not continue a process
/// another still holds stopped, so only the last holder's undo sends SIGCONT.
#[derive(Debug, Default)]
pub struct Holds(std::sync::Mutex<HashMap<(u32, u64), HashSet<u64>>>);

impl Holds {
    fn hold(&self, pid: u32, start_time: u64, token: u64) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.entry((pid, start_time)).or_default().insert(token);
    }

    /// Lets go of one stop; returns how many other stops still hold the process.
    fn release(&self, pid: u32, start_time: u64, token: u64) -> usize {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tokens) = held.get_mut(&(pid, start_time)) else {
            return 0;
        };
        tokens.remove(&token);
        let others = tokens.len();
        if others == 0 {
            held.remove(&(pid, start_time));
        }
        others
    }
}

impl Change for Stopped {
    /// Continues the process if it is still the same one and no other stop holds it.
    fn undo(&self, b: &Backends) -> CapResult<()> {
        let others = b.stops.release(self.pid, self.start_time, self.token);
        if others > 0 {
            tracing::info!(
                pid = self.pid,
                "{others} other stop(s) still hold the process: not continuing it yet"
            );
            return Ok(());
        }
        match linux::signal(self.pid, Some(self.start_time), NixSignal::SIGCONT) {
            Ok(()) => Ok(()),
            Err(CapError::TargetGone(why)) => {
                tracing::info!("{why}: nothing to continue");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn is_present(&self, _: &Backends) -> bool {
        linux::info(self.pid).is_some_and(|p| p.start_time == self.start_time && p.state == 'T')
    }

    fn manual_steps(&self, _: &Backends) -> String {
        format!("kill -CONT {}", self.pid)
    }
}

impl Change for stress::StressInverse {
    fn undo(&self, _: &Backends) -> CapResult<()> {
        stress::undo(self)
    }

    fn is_present(&self, _: &Backends) -> bool {
        stress::is_present(self)
    }

    fn manual_steps(&self, _: &Backends) -> String {
        format!("kill -KILL -- -{}", self.pgid)
    }
}

fn nix_signal(s: Signal) -> NixSignal {
    match s {
        Signal::Hup => NixSignal::SIGHUP,
        Signal::Int => NixSignal::SIGINT,
        Signal::Quit => NixSignal::SIGQUIT,
        Signal::Kill => NixSignal::SIGKILL,
        Signal::Usr1 => NixSignal::SIGUSR1,
        Signal::Usr2 => NixSignal::SIGUSR2,
        Signal::Term => NixSignal::SIGTERM,
        Signal::Cont => NixSignal::SIGCONT,
        Signal::Stop => NixSignal::SIGSTOP,
    }
}

/// The policy's name for a contract signal.
fn signal_name(s: Signal) -> SignalName {
    match s {
        Signal::Hup => SignalName::Hup,
        Signal::Int => SignalName::Int,
        Signal::Quit => SignalName::Quit,
        Signal::Kill => SignalName::Kill,
        Signal::Usr1 => SignalName::Usr1,
        Signal::Usr2 => SignalName::Usr2,
        Signal::Term => SignalName::Term,
        Signal::Cont => SignalName::Cont,
        Signal::Stop => SignalName::Stop,
    }
}

/// The policy's name for a contract stress kind.
fn stress_name(k: ContractStress) -> StressKind {
    match k {
        ContractStress::Cpu => StressKind::Cpu,
        ContractStress::Memory => StressKind::Memory,
        ContractStress::Io => StressKind::Io,
    }
}

fn to_wit(p: ProcInfo) -> ProcessInfo {
    ProcessInfo {
        pid: p.pid,
        ppid: p.ppid,
        name: p.name,
        cmdline: p.cmdline,
        state: p.state.to_string(),
        uid: p.uid,
        start_time: p.start_time,
    }
}

impl Host for Context {
    async fn find(&mut self, selector: Selector) -> GuestResult<Vec<ProcessInfo>> {
        self.blocking(move |c| {
            c.find_processes(&selector)
                .map(|v| v.into_iter().map(to_wit).collect())
        })
        .await
    }

    async fn send_signal(&mut self, pid: u32, signal: Signal) -> GuestResult<Option<u64>> {
        self.blocking(move |c| c.signal_process(pid, signal)).await
    }

    async fn start_stress(&mut self, spec: StressSpec) -> GuestResult<u64> {
        self.blocking(move |c| c.start_stress_workers(spec)).await
    }
}
