//! Faultline's SDK: write a fault or a probe in Rust, build it for `wasm32-wasip2`, and the host
//! loads it as a sandboxed component.
//!
//! Enable exactly one feature: `fault` for a fault (exports `describe`, `validate`, `inject`,
//! `revert`) or `probe` for a probe (exports `describe`, `validate`, `check`). Implement
//! `Fault` (or `Probe`) on a type and export it with `export_fault!` (or `export_probe!`).
//! A fault that acts over time (a duty cycle, a kill every 30 s) also implements `Ticking` and
//! is exported with `export_ticking_fault!`: the host then calls its `tick` while it is held.
//! Duration parameters (`"30s"`, `"500ms"`) parse into [`HumanDuration`].
//!
//! ```ignore
//! use faultline_sdk::{Capability, Error, Fault, InjectContext, process};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Params { pid: u32 }
//!
//! struct Pause;
//!
//! impl Fault for Pause {
//!     type Params = Params;
//!     type State = Vec<u64>;
//!     const SUMMARY: &'static str = "pauses a process";
//!     const CAPABILITIES: &'static [Capability] = &[Capability::Process];
//!
//!     fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
//!         Ok(process::send_signal(params.pid, process::Signal::Stop)?.into_iter().collect())
//!     }
//!
//!     fn revert(changes: Vec<u64>) -> Result<(), Error> {
//!         faultline_sdk::rollback::undo_all(&changes)
//!     }
//! }
//!
//! faultline_sdk::export_fault!(Pause);
//! ```
//!
//! See `sdk/README.md` for a walk from an empty crate to a built component.

#![cfg_attr(not(any(feature = "fault", feature = "probe")), allow(unused))]

#[cfg(all(feature = "fault", feature = "probe"))]
compile_error!("faultline-sdk: enable only one of the features `fault` and `probe`");

#[cfg(feature = "fault")]
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "fault",
        pub_export_macro: true,
        export_macro_name: "__export_fault_world",
        default_bindings_module: "faultline_sdk::bindings",
    });
}

/// The `ticking-fault` world: the `fault` world's imports (mapped onto [`bindings`], so one
/// set of types serves both) and its exports plus `tick`. A crate exports one world or the
/// other, by the macro it calls.
#[cfg(feature = "fault")]
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod ticking_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "ticking-fault",
        pub_export_macro: true,
        export_macro_name: "__export_ticking_fault_world",
        default_bindings_module: "faultline_sdk::ticking_bindings",
        with: {
            "faultline:contract/types@0.1.1": crate::bindings::faultline::contract::types,
            "faultline:contract/log@0.1.1": crate::bindings::faultline::contract::log,
            "faultline:contract/rollback@0.1.1": crate::bindings::faultline::contract::rollback,
            "faultline:contract/process@0.1.1": crate::bindings::faultline::contract::process,
            "faultline:contract/cgroup@0.1.1": crate::bindings::faultline::contract::cgroup,
            "faultline:contract/network@0.1.1": crate::bindings::faultline::contract::network,
            "faultline:contract/filesystem@0.1.1": crate::bindings::faultline::contract::filesystem,
        },
    });
}

#[cfg(feature = "probe")]
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "probe",
        pub_export_macro: true,
        export_macro_name: "__export_probe_world",
        default_bindings_module: "faultline_sdk::bindings",
    });
}

#[cfg(any(feature = "fault", feature = "probe"))]
mod contract;
mod duration;
#[cfg(any(feature = "fault", feature = "probe"))]
pub use contract::*;
pub use duration::HumanDuration;

#[cfg(feature = "fault")]
pub mod cgroup;
#[cfg(feature = "probe")]
pub mod command;
#[cfg(feature = "fault")]
mod fault;
#[cfg(feature = "fault")]
pub mod filesystem;
#[cfg(feature = "probe")]
pub mod http;
#[cfg(any(feature = "fault", feature = "probe"))]
pub mod log;
#[cfg(feature = "fault")]
pub mod network;
#[cfg(feature = "probe")]
pub mod outbound;
#[cfg(feature = "probe")]
mod probe;
#[cfg(any(feature = "fault", feature = "probe"))]
pub mod process;
#[cfg(feature = "fault")]
pub mod rollback;
#[cfg(feature = "fault")]
mod tick;
