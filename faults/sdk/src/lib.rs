//! Faultline's SDK: write a fault or a probe in Rust, build it for `wasm32-wasip2`, and the host
//! loads it as a sandboxed component that touches the system only through the capabilities the
//! operator's policy grants.
//!
//! The features are additive: `fault` gives [`Fault`] and [`Ticking`] with [`export_fault!`] and
//! [`export_ticking_fault!`]; `probe` gives [`Probe`] with [`export_probe!`] and [`http`];
//! `testing` gives [`testing::MockHost`], which runs a fault's or probe's logic in a native
//! `cargo test`. Implement the trait on a type and export it with the macro: the macro picks the
//! world the component exports, and the component imports only the host functions it calls.
//!
//! `faultline new fault NAME` starts a crate; `faults/sdk/README.md` walks through the lifecycle
//! (describe, validate, inject that returns promptly, ticks, revert in a fresh instance with the
//! state as bytes), the errors, testing and publishing.
//!
//! ```
//! # #[cfg(all(feature = "fault", feature = "testing"))] {
//! use faultline_sdk::{Capability, Error, Fault, InjectContext, process, rollback};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Params {
//!     /// The process to pause.
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
//! faultline_sdk::export_fault!(Pause);
//!
//! // The same calls the host makes, against the mock host.
//! let host = faultline_sdk::testing::MockHost::new().process(7, "app", &["app"]);
//! let state = host.inject::<Pause>(serde_json::json!({ "pid": 7 })).unwrap();
//! assert_eq!(host.process_state(7).as_deref(), Some("T"));
//! host.revert::<Pause>(state).unwrap();
//! assert!(host.outstanding().is_empty());
//! # }
//! ```

#![cfg_attr(not(any(feature = "fault", feature = "probe")), allow(unused))]

/// Every host interface a guest may import, bound once: the `fault`, `ticking-fault` and
/// `probe` worlds below map their imports onto these modules, so one set of types serves all
/// three and the features are additive. A component imports only the functions it calls.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        inline: "
            package faultline:sdk;
            world guest {
                import faultline:contract/log@0.1.1;
                import faultline:contract/rollback@0.1.1;
                import faultline:contract/process@0.1.1;
                import faultline:contract/cgroup@0.1.1;
                import faultline:contract/network@0.1.1;
                import faultline:contract/filesystem@0.1.1;
                import faultline:contract/command@0.1.1;
                import faultline:contract/outbound@0.1.1;
            }
        ",
        world: "faultline:sdk/guest",
        generate_all,
        // Errors compare in tests (`assert_eq!(result, Err(Error::Denied(..)))`).
        additional_derives: [PartialEq],
        default_bindings_module: "faultline_sdk::bindings",
    });
}

/// Maps a world's imports onto [`bindings`] (each interface it imports, by name) and
/// generates only its exports.
macro_rules! export_world {
    ($module:ident, $world:literal, $macro:literal, $path:literal, [$($key:literal => $interface:ident),*]) => {
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        pub mod $module {
            wit_bindgen::generate!({
                path: "wit",
                world: $world,
                pub_export_macro: true,
                export_macro_name: $macro,
                default_bindings_module: $path,
                with: {
                    "faultline:contract/types@0.1.1": crate::bindings::faultline::contract::types,
                    $(
                        $key: crate::bindings::faultline::contract::$interface,
                    )*
                },
            });
        }
    };
}

#[cfg(feature = "fault")]
export_world!(
    fault_bindings,
    "fault",
    "__export_fault_world",
    "faultline_sdk::fault_bindings",
    [
        "faultline:contract/log@0.1.1" => log,
        "faultline:contract/rollback@0.1.1" => rollback,
        "faultline:contract/process@0.1.1" => process,
        "faultline:contract/cgroup@0.1.1" => cgroup,
        "faultline:contract/network@0.1.1" => network,
        "faultline:contract/filesystem@0.1.1" => filesystem
    ]
);
#[cfg(feature = "fault")]
export_world!(
    ticking_bindings,
    "ticking-fault",
    "__export_ticking_fault_world",
    "faultline_sdk::ticking_bindings",
    [
        "faultline:contract/log@0.1.1" => log,
        "faultline:contract/rollback@0.1.1" => rollback,
        "faultline:contract/process@0.1.1" => process,
        "faultline:contract/cgroup@0.1.1" => cgroup,
        "faultline:contract/network@0.1.1" => network,
        "faultline:contract/filesystem@0.1.1" => filesystem
    ]
);
#[cfg(feature = "probe")]
export_world!(
    probe_bindings,
    "probe",
    "__export_probe_world",
    "faultline_sdk::probe_bindings",
    [
        "faultline:contract/log@0.1.1" => log,
        "faultline:contract/process@0.1.1" => process,
        "faultline:contract/outbound@0.1.1" => outbound,
        "faultline:contract/command@0.1.1" => command
    ]
);

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
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
#[cfg(feature = "fault")]
mod tick;
