//! Faultline's runtime: loads faults and probes as sandboxed Wasm components, gives them
//! capability-scoped host functions, and always rolls them back.
//!
//! Layers, top to bottom: [`cli`] → [`host`] → [`capability`] → [`journal`], [`policy`];
//! [`hub`] finds and verifies components.

pub mod agent;
pub mod capability;
pub mod cli;
pub mod component;
pub mod contract;
pub mod estop;
pub mod execution;
pub mod experiment;
pub mod host;
pub mod hub;
pub mod journal;
pub mod memory;
pub mod policy;
