//! Outbound TCP and HTTP for probes, through the host's `outbound` capability.

pub use crate::bindings::faultline::contract::outbound::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::outbound::{http_get, tcp_connect};
