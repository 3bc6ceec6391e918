//! Rust bindings of the WIT contract in `sdk/wit/`: the one `bindgen!` of the runtime.

#![allow(missing_docs)]

/// The `fault` world: exports `describe`, `validate`, `inject`, `revert`.
pub mod fault {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "fault",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// The `probe` world: exports `describe`, `validate`, `check`.
pub mod probe {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "probe",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "faultline:contract/types": super::fault::faultline::contract::types,
            "faultline:contract/log": super::fault::faultline::contract::log,
            "faultline:contract/process": super::fault::faultline::contract::process,
        },
    });
}

pub use fault::faultline::contract::{cgroup, log, network, process, rollback, types};
pub use probe::faultline::contract::outbound;

/// The WIT package every contract interface belongs to.
pub const PACKAGE: &str = "faultline:contract";
/// The contract's version.
pub const VERSION: &str = "0.1.0";
