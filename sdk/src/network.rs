//! Network faults, through the host's `network` capability.

pub use crate::bindings::faultline::contract::network::*;
