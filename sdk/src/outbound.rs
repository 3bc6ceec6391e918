//! Outbound TCP and HTTP for probes, through the host's `outbound` capability.

pub use crate::bindings::faultline::contract::outbound::*;
