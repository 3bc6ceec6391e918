//! `network-duplication`: sends a share of egress packets twice; revert stops it.
//!
//! The parameters, validation, journalled change and revert are the SDK's `PercentFault`.

use faultline_sdk::Error;
use faultline_sdk::network::{self, PercentEffect, PercentFault, Traffic};

/// The `network-duplication` effect.
struct Duplication;

impl PercentEffect for Duplication {
    const NAME: &'static str = "network-duplication";
    const SUMMARY: &'static str = "Sends a share of egress packets twice";

    fn apply(traffic: &Traffic, percent: f32) -> Result<u64, Error> {
        network::add_duplication(traffic, percent)
    }
}

faultline_sdk::export_fault!(PercentFault<Duplication>);
