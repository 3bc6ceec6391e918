//! Rust bindings of the WIT contract in `faults/sdk/wit/`: the one `bindgen!` of the runtime.
//!
//! The host implements `faultline:contract@0.1.1`. Components built against 0.1.0 import
//! `…@0.1.0` interfaces; wasmtime's linker is semver-aware and satisfies them with the 0.1.1
//! definitions, which only add to 0.1.0 (the types 0.1.0 components return are unchanged).

#![allow(missing_docs)]

/// The `fault` world: exports `describe`, `validate`, `inject`, `revert`.
pub mod fault {
    wasmtime::component::bindgen!({
        path: "../faults/sdk/wit",
        world: "fault",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// The `ticking-fault` world: a fault that also exports `tick`. Its imports are the `fault`
/// world's, so only the exports are bound here.
pub mod ticking {
    wasmtime::component::bindgen!({
        path: "../faults/sdk/wit",
        world: "ticking-fault",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "faultline:contract/types": super::fault::faultline::contract::types,
            "faultline:contract/log": super::fault::faultline::contract::log,
            "faultline:contract/rollback": super::fault::faultline::contract::rollback,
            "faultline:contract/process": super::fault::faultline::contract::process,
            "faultline:contract/cgroup": super::fault::faultline::contract::cgroup,
            "faultline:contract/network": super::fault::faultline::contract::network,
            "faultline:contract/filesystem": super::fault::faultline::contract::filesystem,
        },
    });
}

/// The `probe` world: exports `describe`, `validate`, `check`.
pub mod probe {
    wasmtime::component::bindgen!({
        path: "../faults/sdk/wit",
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

pub use fault::faultline::contract::{cgroup, filesystem, log, network, process, rollback, types};
pub use probe::faultline::contract::{command, outbound};

/// The WIT package every contract interface belongs to.
pub const PACKAGE: &str = "faultline:contract";
/// The contract's version. Components built against any 0.1.x load.
pub const VERSION: &str = "0.1.1";
