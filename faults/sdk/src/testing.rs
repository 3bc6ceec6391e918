//! A mock host, for testing a fault's or a probe's logic in a native `cargo test`.
//!
//! Enable the `testing` feature from `[dev-dependencies]` (it does nothing in a wasm32 build,
//! so a published component never carries it) and run the tests for the machine you are on
//! (`cargo test --target host-tuple` when `.cargo/config.toml` builds for wasm32-wasip2):
//!
//! ```toml
//! [dev-dependencies]
//! faultline-sdk = { path = "../sdk", features = ["testing"] }
//! ```
//!
//! A [`MockHost`] answers every host call the SDK makes on its thread, records it, and keeps a
//! small model of what the calls did: processes it was told about (a `stop` makes one `T`, a
//! `cont` or the undo of the stop makes it `S` again, a `kill` removes it), the changes that are
//! still in force, the log lines. [`MockHost::inject`], [`MockHost::revert`],
//! [`MockHost::tick`] and [`MockHost::check`] call a [`Fault`](crate::Fault),
//! [`Ticking`](crate::Ticking) fault or [`Probe`](crate::Probe) exactly as the real host does:
//! parameters as JSON text, `validate` before `inject` or `check`, the state as bytes.
//!
//! What it does not model: the policy (every call is allowed unless you make it fail with
//! [`MockHost::fail`]), deadlines and memory limits, and fresh instances (statics survive from
//! `inject` to `revert` here; in the host they do not). Test those against a real agent.
//!
//! ```
//! # #[cfg(feature = "fault")] {
//! use faultline_sdk::testing::MockHost;
//! use faultline_sdk::{Capability, Error, Fault, InjectContext, process, rollback};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Params {
//!     pid: u32,
//! }
//!
//! struct Pause;
//!
//! impl Fault for Pause {
//!     type Params = Params;
//!     type State = Vec<u64>;
//!     const SUMMARY: &'static str = "Pauses a process";
//!     const CAPABILITIES: &'static [Capability] = &[Capability::Process];
//!
//!     fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
//!         Ok(process::send_signal(params.pid, process::Signal::Stop)?.into_iter().collect())
//!     }
//!
//!     fn revert(changes: Vec<u64>) -> Result<(), Error> {
//!         rollback::undo_all(&changes)
//!     }
//! }
//!
//! let host = MockHost::new().process(4242, "nginx", &["nginx", "-g", "daemon off;"]);
//! let state = host.inject::<Pause>(serde_json::json!({ "pid": 4242 })).unwrap();
//! assert_eq!(host.process_state(4242).as_deref(), Some("T"));
//! assert_eq!(host.outstanding().len(), 1);
//!
//! host.revert::<Pause>(state).unwrap();
//! assert_eq!(host.process_state(4242).as_deref(), Some("S"));
//! assert!(host.outstanding().is_empty(), "revert left changes in force");
//! assert_eq!(host.calls_to("process/send-signal").len(), 1);
//! # }
//! ```

// A test helper: a misuse (no host on the thread, an unknown function name) is a panic that
// fails the test with a message, which is what a test author wants.
#![allow(clippy::panic, clippy::expect_used)]
#![cfg_attr(not(feature = "fault"), allow(unused_imports))]

use crate::bindings::faultline::contract::types::{Change, Error};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// One host call the code under test made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `interface/function` in the contract's names, e.g. `process/send-signal`.
    pub function: &'static str,
    /// The arguments, `Debug`-formatted and separated by `, `.
    pub args: String,
    /// The change id the host handed back, for a call that changes something.
    pub change: Option<Change>,
    /// The error it returned, if it failed.
    pub error: Option<Error>,
}

/// Every function of the contract the mock answers, by `interface/function` name.
pub const FUNCTIONS: &[&str] = &[
    "log/write",
    "rollback/undo",
    "process/find",
    "process/send-signal",
    "process/start-stress",
    "cgroup/resolve",
    "cgroup/set-cpu-limit",
    "cgroup/set-memory-limit",
    "cgroup/set-pids-limit",
    "cgroup/set-io-limit",
    "cgroup/freeze",
    "network/add-delay",
    "network/add-loss",
    "network/add-corruption",
    "network/add-duplication",
    "network/limit-bandwidth",
    "network/blackhole",
    "network/reject",
    "network/fail-dns",
    "network/fail-dns-names",
    "filesystem/space",
    "filesystem/fill",
    "filesystem/start-io-stress",
    "command/run",
    "outbound/tcp-connect",
    "outbound/http-get",
    "http/send",
];

type Handler<A, R> = Box<dyn FnMut(A) -> R>;
type CommandOutput = crate::bindings::faultline::contract::command::CommandOutput;
type HttpResponse = crate::bindings::faultline::contract::outbound::HttpResponse;
/// Answers `command/run`: program and arguments in, the output or an error out.
type CommandHandler = Handler<(String, Vec<String>), Result<CommandOutput, Error>>;

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    logs: Vec<(String, String)>,
    processes: Vec<crate::bindings::faultline::contract::process::ProcessInfo>,
    cgroups: Vec<(u32, String)>,
    next_change: Change,
    outstanding: Vec<(Change, &'static str, String)>,
    failures: Vec<(&'static str, Error)>,
    disk: Option<crate::bindings::faultline::contract::filesystem::DiskSpace>,
    command: Option<CommandHandler>,
    tcp: Option<Handler<(String, u16), Result<u64, Error>>>,
    http_get: Option<Handler<String, Result<HttpResponse, Error>>>,
    #[cfg(feature = "probe")]
    http:
        Option<Handler<crate::http::Request, Result<crate::http::Response, crate::http::Failure>>>,
}

thread_local! {
    static HOST: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// The mock host of this thread; see the [module docs](self).
///
/// It answers the calls made on the thread that created it, until it is dropped. Cargo runs
/// each test on a thread of its own, so tests do not see each other's hosts.
pub struct MockHost {
    state: Rc<RefCell<State>>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// Installs a mock host on this thread, with no processes, no cgroups and a 100 GiB disk.
    ///
    /// # Panics
    /// When this thread has one already.
    pub fn new() -> MockHost {
        let state = Rc::new(RefCell::new(State {
            next_change: 1,
            ..State::default()
        }));
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            assert!(h.is_none(), "this thread has a MockHost already");
            *h = Some(state.clone());
        });
        MockHost { state }
    }

    /// Adds a process `find` can see: state `S`, parent 1, uid 0, its pid as its start time.
    pub fn process(self, pid: u32, name: &str, cmdline: &[&str]) -> MockHost {
        use crate::bindings::faultline::contract::process::ProcessInfo;
        self.state.borrow_mut().processes.push(ProcessInfo {
            pid,
            ppid: 1,
            name: name.to_string(),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            state: "S".into(),
            uid: 0,
            start_time: u64::from(pid),
        });
        self
    }

    /// Puts process `pid` in the cgroup `path` (for `cgroup/resolve` of a pid and the
    /// `cgroup` process selector). A process not placed anywhere is in `/`.
    pub fn cgroup_of(self, pid: u32, path: &str) -> MockHost {
        self.state
            .borrow_mut()
            .cgroups
            .push((pid, path.to_string()));
        self
    }

    /// Makes every call of `function` (`interface/function`, one of [`FUNCTIONS`]) fail with
    /// `error`, e.g. `Error::denied("no rule grants process")` to see how the code copes.
    ///
    /// # Panics
    /// When `function` is not one of [`FUNCTIONS`].
    pub fn fail(self, function: &str, error: Error) -> MockHost {
        let known = FUNCTIONS
            .iter()
            .find(|f| **f == function)
            .unwrap_or_else(|| panic!("{function:?} is not a host function; see FUNCTIONS"));
        self.state.borrow_mut().failures.push((known, error));
        self
    }

    /// The file system `filesystem/space` reports (the default is 100 GiB, all of it free).
    /// `filesystem/fill` takes from `available` what it fills, and its undo gives it back.
    pub fn disk(self, total_bytes: u64, available_bytes: u64) -> MockHost {
        use crate::bindings::faultline::contract::filesystem::DiskSpace;
        self.state.borrow_mut().disk = Some(DiskSpace {
            total_bytes,
            free_bytes: available_bytes,
            available_bytes,
        });
        self
    }

    /// Answers `command/run` (program, arguments). Without it the call is denied, as a
    /// program missing from the policy's allow-list is.
    pub fn on_command(
        self,
        handler: impl FnMut(
            &str,
            &[String],
        ) -> Result<
            crate::bindings::faultline::contract::command::CommandOutput,
            Error,
        > + 'static,
    ) -> MockHost {
        let mut handler = handler;
        self.state.borrow_mut().command = Some(Box::new(move |(p, a): (String, Vec<String>)| {
            handler(&p, &a)
        }));
        self
    }

    /// Answers `outbound/tcp-connect` (host, port) with the connect time in microseconds.
    /// Without it the call is denied.
    pub fn on_tcp_connect(
        self,
        handler: impl FnMut(&str, u16) -> Result<u64, Error> + 'static,
    ) -> MockHost {
        let mut handler = handler;
        self.state.borrow_mut().tcp = Some(Box::new(move |(h, p): (String, u16)| handler(&h, p)));
        self
    }

    /// Answers `outbound/http-get` (url). Without it the call is denied.
    pub fn on_http_get(
        self,
        handler: impl FnMut(
            &str,
        ) -> Result<
            crate::bindings::faultline::contract::outbound::HttpResponse,
            Error,
        > + 'static,
    ) -> MockHost {
        let mut handler = handler;
        self.state.borrow_mut().http_get = Some(Box::new(move |u: String| handler(&u)));
        self
    }

    /// Answers [`http::send`](crate::http::send) with a response or a failure. Without it
    /// every request is denied.
    #[cfg(feature = "probe")]
    pub fn on_http(
        self,
        handler: impl FnMut(
            &crate::http::Request,
        ) -> Result<crate::http::Response, crate::http::Failure>
        + 'static,
    ) -> MockHost {
        let mut handler = handler;
        self.state.borrow_mut().http = Some(Box::new(move |r: crate::http::Request| handler(&r)));
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    /// The calls of one function (`interface/function`), in order.
    pub fn calls_to(&self, function: &str) -> Vec<Call> {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| c.function == function)
            .cloned()
            .collect()
    }

    /// The log lines written so far: level (`info`, `warn`, …) and message.
    pub fn logs(&self) -> Vec<(String, String)> {
        self.state.borrow().logs.clone()
    }

    /// The changes still in force (made and not undone), oldest first: id, the function that
    /// made it and its arguments. Empty after a revert that cleaned up everything.
    pub fn outstanding(&self) -> Vec<(Change, &'static str, String)> {
        self.state.borrow().outstanding.clone()
    }

    /// The state (`S`, `T`) of a known process, or `None` once it is gone (killed).
    pub fn process_state(&self, pid: u32) -> Option<String> {
        self.state
            .borrow()
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.state.clone())
    }

    /// What `filesystem/space` reports now.
    pub fn disk_space(&self) -> crate::bindings::faultline::contract::filesystem::DiskSpace {
        disk(&self.state.borrow())
    }

    /// Calls the fault's `inject` as the host does (`params` as JSON text, `validate` first),
    /// for an open-ended run; returns the state bytes `revert` will get.
    #[cfg(feature = "fault")]
    pub fn inject<F: crate::Fault>(&self, params: serde_json::Value) -> Result<Vec<u8>, Error> {
        self.inject_for::<F>(params, Duration::ZERO)
    }

    /// [`MockHost::inject`] for a run of `duration`.
    #[cfg(feature = "fault")]
    pub fn inject_for<F: crate::Fault>(
        &self,
        params: serde_json::Value,
        duration: Duration,
    ) -> Result<Vec<u8>, Error> {
        crate::__fault::inject::<F>(crate::InjectRequest {
            params: params.to_string(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            execution_id: "mock-execution".into(),
        })
    }

    /// Calls the fault's `validate` as the host does before a run.
    #[cfg(feature = "fault")]
    pub fn validate<F: crate::Fault>(&self, params: serde_json::Value) -> Result<(), Error> {
        crate::__fault::validate::<F>(&params.to_string())
    }

    /// Calls the fault's `revert` with the state bytes `inject` (or the last tick) returned.
    #[cfg(feature = "fault")]
    pub fn revert<F: crate::Fault>(&self, state: Vec<u8>) -> Result<(), Error> {
        crate::__fault::revert::<F>(state)
    }

    /// Calls the fault's `tick` number `tick` (0 first) at `elapsed` since `inject` returned,
    /// in a run with `remaining` left (`None`: open-ended). Returns the new state bytes and
    /// when the fault asks to be called next (`None`: no more ticks).
    #[cfg(feature = "fault")]
    pub fn tick<F: crate::Ticking>(
        &self,
        state: Vec<u8>,
        tick: u64,
        elapsed: Duration,
        remaining: Option<Duration>,
    ) -> Result<(Vec<u8>, Option<Duration>), Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let response = crate::__tick::tick::<F>(crate::TickRequest {
            state,
            tick,
            elapsed_ms: ms(elapsed),
            remaining_ms: remaining.map_or(0, ms),
            execution_id: "mock-execution".into(),
        })?;
        let next = (response.next_ms > 0).then(|| Duration::from_millis(response.next_ms.into()));
        Ok((response.state, next))
    }

    /// Calls the probe's `check` as the host does (`params` as JSON text, `validate` first).
    #[cfg(feature = "probe")]
    pub fn check<P: crate::Probe>(
        &self,
        params: serde_json::Value,
    ) -> Result<crate::Outcome, Error> {
        crate::__probe::check::<P>(crate::ProbeRequest {
            params: params.to_string(),
            execution_id: "mock-execution".into(),
        })
    }
}

impl Drop for MockHost {
    fn drop(&mut self) {
        HOST.with(|h| h.borrow_mut().take());
    }
}

fn disk(state: &State) -> crate::bindings::faultline::contract::filesystem::DiskSpace {
    use crate::bindings::faultline::contract::filesystem::DiskSpace;
    state.disk.unwrap_or(DiskSpace {
        total_bytes: 100 << 30,
        free_bytes: 100 << 30,
        available_bytes: 100 << 30,
    })
}

/// The cgroup `pid` was placed in ([`MockHost::cgroup_of`]), else `/`.
fn cgroup_of(s: &State, pid: u32) -> String {
    s.cgroups
        .iter()
        .rev()
        .find(|(p, _)| *p == pid)
        .map_or_else(|| "/".to_string(), |(_, path)| path.clone())
}

/// Runs one call against this thread's mock: records it, applies a configured failure, or
/// lets `answer` produce the result.
fn call<T>(
    function: &'static str,
    args: String,
    answer: impl FnOnce(&mut State) -> Result<T, Error>,
) -> Result<T, Error> {
    let state = HOST.with(|h| h.borrow().clone()).unwrap_or_else(|| {
        panic!(
            "{function} was called with no MockHost on this thread: create one with \
             faultline_sdk::testing::MockHost::new() first"
        )
    });
    let mut state = state.borrow_mut();
    let failure = state
        .failures
        .iter()
        .find(|(f, _)| *f == function)
        .map(|(_, e)| e.clone());
    let result = match failure {
        Some(e) => Err(e),
        None => answer(&mut state),
    };
    state.calls.push(Call {
        function,
        args,
        change: None,
        error: result.as_ref().err().cloned(),
    });
    result
}

/// A call that changes something: on success it hands out a change id and records the change
/// as outstanding until `rollback/undo`.
fn change(
    function: &'static str,
    args: String,
    effect: impl FnOnce(&mut State) -> Result<(), Error>,
) -> Result<Change, Error> {
    let described = args.clone();
    let id = call(function, args, |state| {
        effect(state)?;
        let id = state.next_change;
        state.next_change += 1;
        state.outstanding.push((id, function, described));
        Ok(id)
    })?;
    with_state(|s| {
        if let Some(last) = s.calls.last_mut() {
            last.change = Some(id);
        }
    });
    Ok(id)
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let state = HOST
        .with(|h| h.borrow().clone())
        .expect("checked by call()");
    f(&mut state.borrow_mut())
}

fn denied(what: &str, how: &str) -> Error {
    Error::Denied(format!(
        "the mock host has no answer for {what}: give it one with MockHost::{how}"
    ))
}

/// The mock's versions of the contract's functions, with the signatures of the bindings they
/// stand in for (each module checks that at compile time). The SDK's modules use them instead
/// of the bindings when the `testing` feature is on in a native build.
#[allow(missing_docs)]
pub(crate) mod host {
    use super::*;

    /// Fails to compile when the mock's function has another type than the binding's.
    macro_rules! same_signature {
        ($($binding:path, $mock:path: $ty:ty;)*) => {
            $(const _: () = {
                let _: $ty = $binding;
                let _: $ty = $mock;
            };)*
        };
    }

    pub mod log {
        use crate::bindings::faultline::contract::log::Level;

        pub fn write(level: Level, message: &str) {
            let name = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            let _ = super::call("log/write", format!("{level:?}, {message:?}"), |s| {
                s.logs.push((name.to_string(), message.to_string()));
                Ok(())
            });
        }

        same_signature! {
            crate::bindings::faultline::contract::log::write, write: fn(Level, &str);
        }
    }

    pub mod rollback {
        use super::*;

        pub fn undo(change: Change) -> Result<(), Error> {
            call("rollback/undo", format!("{change}"), |s| {
                // As the host: an id that is not outstanding (undone already) is no error.
                if let Some(i) = s.outstanding.iter().position(|(id, _, _)| *id == change) {
                    let (_, function, args) = s.outstanding.remove(i);
                    undo_effect(s, function, &args);
                }
                Ok(())
            })
        }

        /// What undoing a change does to the mock's model.
        fn undo_effect(s: &mut State, function: &str, args: &str) {
            match function {
                "process/send-signal" => {
                    if let Some(pid) = args.split(", ").next().and_then(|p| p.parse::<u32>().ok())
                        && let Some(p) = s.processes.iter_mut().find(|p| p.pid == pid)
                    {
                        p.state = "S".into();
                    }
                }
                "filesystem/fill" => {
                    let bytes = args
                        .rsplit(", ")
                        .next()
                        .and_then(|b| b.parse::<u64>().ok())
                        .unwrap_or(0);
                    let mut space = disk(s);
                    space.available_bytes = space.available_bytes.saturating_add(bytes);
                    space.free_bytes = space.free_bytes.saturating_add(bytes);
                    s.disk = Some(space);
                }
                _ => {}
            }
        }

        same_signature! {
            crate::bindings::faultline::contract::rollback::undo, undo:
                fn(Change) -> Result<(), Error>;
        }
    }

    pub mod process {
        use super::*;
        use crate::bindings::faultline::contract::process::{
            ProcessInfo, Selector, Signal, StressSpec,
        };

        pub fn find(selector: &Selector) -> Result<Vec<ProcessInfo>, Error> {
            call("process/find", format!("{selector:?}"), |s| {
                let matches = |p: &ProcessInfo| -> Result<bool, Error> {
                    Ok(match selector {
                        Selector::Pid(pid) => p.pid == *pid,
                        Selector::Name(name) => &p.name == name,
                        Selector::Cmdline(pattern) => regex_lite::Regex::new(pattern)
                            .map_err(|e| Error::Invalid(format!("cmdline pattern: {e}")))?
                            .is_match(&p.cmdline.join(" ")),
                        Selector::Cgroup(path) => {
                            let own = cgroup_of(s, p.pid);
                            own == *path
                                || own.starts_with(&format!("{}/", path.trim_end_matches('/')))
                        }
                    })
                };
                let mut found = Vec::new();
                for p in &s.processes {
                    if matches(p)? {
                        found.push(p.clone());
                    }
                }
                Ok(found)
            })
        }

        pub fn send_signal(pid: u32, signal: Signal) -> Result<Option<Change>, Error> {
            let gone = || Error::TargetGone(format!("no process {pid}"));
            let args = format!("{pid}, {signal:?}");
            if signal == Signal::Stop {
                return change("process/send-signal", args, |s| {
                    let p = s
                        .processes
                        .iter_mut()
                        .find(|p| p.pid == pid)
                        .ok_or_else(gone)?;
                    p.state = "T".into();
                    Ok(())
                })
                .map(Some);
            }
            call("process/send-signal", args, |s| {
                let i = s
                    .processes
                    .iter()
                    .position(|p| p.pid == pid)
                    .ok_or_else(gone)?;
                match signal {
                    Signal::Cont => s.processes[i].state = "S".into(),
                    Signal::Kill | Signal::Term | Signal::Int | Signal::Quit | Signal::Hup => {
                        s.processes.remove(i);
                    }
                    _ => {}
                }
                Ok(None)
            })
        }

        pub fn start_stress(spec: &StressSpec) -> Result<Change, Error> {
            change("process/start-stress", format!("{spec:?}"), |_| Ok(()))
        }

        same_signature! {
            crate::bindings::faultline::contract::process::find, find:
                fn(&Selector) -> Result<Vec<ProcessInfo>, Error>;
            crate::bindings::faultline::contract::process::send_signal, send_signal:
                fn(u32, Signal) -> Result<Option<Change>, Error>;
            crate::bindings::faultline::contract::process::start_stress, start_stress:
                fn(&StressSpec) -> Result<Change, Error>;
        }
    }

    pub mod cgroup {
        use super::*;
        use crate::bindings::faultline::contract::cgroup::{CgroupInfo, Target};

        pub fn resolve(target: &Target) -> Result<Vec<CgroupInfo>, Error> {
            call("cgroup/resolve", format!("{target:?}"), |s| {
                let path = match target {
                    Target::Path(path) => path.clone(),
                    Target::Pid(pid) => {
                        if !s.processes.iter().any(|p| p.pid == *pid) {
                            return Err(Error::TargetGone(format!("no process {pid}")));
                        }
                        cgroup_of(s, *pid)
                    }
                };
                Ok(vec![CgroupInfo {
                    path,
                    version: 2,
                    controllers: ["cpu", "memory", "pids", "io"].map(String::from).to_vec(),
                }])
            })
        }

        macro_rules! limits {
            ($($name:ident $wit:literal ($($arg:ident: $ty:ty),*);)*) => {$(
                pub fn $name(target: &Target, $($arg: $ty),*) -> Result<Change, Error> {
                    change($wit, format!("{target:?}") $(+ &format!(", {:?}", $arg))*, |_| Ok(()))
                }
            )*};
        }

        limits! {
            set_cpu_limit "cgroup/set-cpu-limit" (millicores: u32);
            set_memory_limit "cgroup/set-memory-limit" (bytes: u64);
            set_pids_limit "cgroup/set-pids-limit" (max: u64);
            set_io_limit "cgroup/set-io-limit" (device: &str, read_bps: u64, write_bps: u64);
            freeze "cgroup/freeze" ();
        }

        same_signature! {
            crate::bindings::faultline::contract::cgroup::resolve, resolve:
                fn(&Target) -> Result<Vec<CgroupInfo>, Error>;
            crate::bindings::faultline::contract::cgroup::set_cpu_limit, set_cpu_limit:
                fn(&Target, u32) -> Result<Change, Error>;
            crate::bindings::faultline::contract::cgroup::set_memory_limit, set_memory_limit:
                fn(&Target, u64) -> Result<Change, Error>;
            crate::bindings::faultline::contract::cgroup::set_pids_limit, set_pids_limit:
                fn(&Target, u64) -> Result<Change, Error>;
            crate::bindings::faultline::contract::cgroup::set_io_limit, set_io_limit:
                fn(&Target, &str, u64, u64) -> Result<Change, Error>;
            crate::bindings::faultline::contract::cgroup::freeze, freeze:
                fn(&Target) -> Result<Change, Error>;
        }
    }

    pub mod network {
        use super::*;
        use crate::bindings::faultline::contract::network::{DnsFailure, Traffic};

        macro_rules! traffic {
            ($($name:ident $wit:literal ($($arg:ident: $ty:ty),*);)*) => {$(
                pub fn $name(traffic: &Traffic, $($arg: $ty),*) -> Result<Change, Error> {
                    change($wit, format!("{traffic:?}") $(+ &format!(", {:?}", $arg))*, |_| Ok(()))
                }
            )*};
        }

        traffic! {
            add_delay "network/add-delay" (delay_ms: u32, jitter_ms: u32);
            add_loss "network/add-loss" (percent: f32);
            add_corruption "network/add-corruption" (percent: f32);
            add_duplication "network/add-duplication" (percent: f32);
            limit_bandwidth "network/limit-bandwidth" (rate_kbit: u64);
            blackhole "network/blackhole" ();
            reject "network/reject" ();
            fail_dns "network/fail-dns" ();
            fail_dns_names "network/fail-dns-names" (names: &[String], failure: DnsFailure);
        }

        same_signature! {
            crate::bindings::faultline::contract::network::add_delay, add_delay:
                fn(&Traffic, u32, u32) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::add_loss, add_loss:
                fn(&Traffic, f32) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::add_corruption, add_corruption:
                fn(&Traffic, f32) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::add_duplication, add_duplication:
                fn(&Traffic, f32) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::limit_bandwidth, limit_bandwidth:
                fn(&Traffic, u64) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::blackhole, blackhole:
                fn(&Traffic) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::reject, reject:
                fn(&Traffic) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::fail_dns, fail_dns:
                fn(&Traffic) -> Result<Change, Error>;
            crate::bindings::faultline::contract::network::fail_dns_names, fail_dns_names:
                fn(&Traffic, &[String], DnsFailure) -> Result<Change, Error>;
        }
    }

    pub mod filesystem {
        use super::*;
        use crate::bindings::faultline::contract::filesystem::{DiskSpace, IoStressSpec};

        pub fn space(directory: &str) -> Result<DiskSpace, Error> {
            call("filesystem/space", format!("{directory:?}"), |s| {
                Ok(disk(s))
            })
        }

        pub fn fill(directory: &str, bytes: u64) -> Result<Change, Error> {
            change("filesystem/fill", format!("{directory:?}, {bytes}"), |s| {
                let mut space = disk(s);
                if bytes > space.available_bytes {
                    return Err(Error::Failed(format!(
                        "{bytes} bytes do not fit in the {} available",
                        space.available_bytes
                    )));
                }
                space.available_bytes -= bytes;
                space.free_bytes = space.free_bytes.saturating_sub(bytes);
                s.disk = Some(space);
                Ok(())
            })
        }

        pub fn start_io_stress(spec: &IoStressSpec) -> Result<Change, Error> {
            change(
                "filesystem/start-io-stress",
                format!("{spec:?}"),
                |_| Ok(()),
            )
        }

        same_signature! {
            crate::bindings::faultline::contract::filesystem::space, space:
                fn(&str) -> Result<DiskSpace, Error>;
            crate::bindings::faultline::contract::filesystem::fill, fill:
                fn(&str, u64) -> Result<Change, Error>;
            crate::bindings::faultline::contract::filesystem::start_io_stress, start_io_stress:
                fn(&IoStressSpec) -> Result<Change, Error>;
        }
    }

    pub mod command {
        use super::*;
        use crate::bindings::faultline::contract::command::CommandOutput;

        pub fn run(
            program: &str,
            args: &[String],
            timeout_ms: u32,
        ) -> Result<CommandOutput, Error> {
            call(
                "command/run",
                format!("{program:?}, {args:?}, {timeout_ms}"),
                |s| match s.command.as_mut() {
                    Some(h) => h((program.to_string(), args.to_vec())),
                    None => Err(denied("command/run", "on_command")),
                },
            )
        }

        same_signature! {
            crate::bindings::faultline::contract::command::run, run:
                fn(&str, &[String], u32) -> Result<CommandOutput, Error>;
        }
    }

    pub mod outbound {
        use super::*;
        use crate::bindings::faultline::contract::outbound::HttpResponse;

        pub fn tcp_connect(host: &str, port: u16, timeout_ms: u32) -> Result<u64, Error> {
            call(
                "outbound/tcp-connect",
                format!("{host:?}, {port}, {timeout_ms}"),
                |s| match s.tcp.as_mut() {
                    Some(h) => h((host.to_string(), port)),
                    None => Err(denied("outbound/tcp-connect", "on_tcp_connect")),
                },
            )
        }

        pub fn http_get(url: &str, timeout_ms: u32) -> Result<HttpResponse, Error> {
            call(
                "outbound/http-get",
                format!("{url:?}, {timeout_ms}"),
                |s| match s.http_get.as_mut() {
                    Some(h) => h(url.to_string()),
                    None => Err(denied("outbound/http-get", "on_http_get")),
                },
            )
        }

        same_signature! {
            crate::bindings::faultline::contract::outbound::tcp_connect, tcp_connect:
                fn(&str, u16, u32) -> Result<u64, Error>;
            crate::bindings::faultline::contract::outbound::http_get, http_get:
                fn(&str, u32) -> Result<HttpResponse, Error>;
        }
    }

    /// `http::send` through the mock: the handler's answer, or a denial without one.
    #[cfg(feature = "probe")]
    pub fn http_send(
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::Failure> {
        use crate::http::Failure;
        let mut outcome = None;
        let recorded = call(
            "http/send",
            format!("{} {}", request.method, request.url),
            |s| match s.http.as_mut() {
                Some(h) => {
                    let answer = h(request.clone());
                    let as_error = answer
                        .as_ref()
                        .err()
                        .map(|f| Error::Failed(format!("{f:?}")));
                    outcome = Some(answer);
                    as_error.map_or(Ok(()), Err)
                }
                None => Err(denied("http/send", "on_http")),
            },
        );
        match (outcome, recorded) {
            (Some(answer), _) => answer,
            (None, Err(Error::Denied(why))) => Err(Failure::Denied(why)),
            (None, Err(e)) => Err(Failure::Invalid(format!("{e:?}"))),
            (None, Ok(())) => Err(Failure::Invalid("no answer".into())),
        }
    }
}
