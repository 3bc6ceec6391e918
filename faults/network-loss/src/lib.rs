//! `network-loss`: drops a share of egress packets at random; revert stops it.
//!
//! The parameters, validation, journalled change and revert are the SDK's `PercentFault`.

use faultline_sdk::Error;
use faultline_sdk::network::{self, PercentEffect, PercentFault, Traffic};

/// The `network-loss` effect.
struct Loss;

impl PercentEffect for Loss {
    const NAME: &'static str = "network-loss";
    const SUMMARY: &'static str = "Drops a share of egress packets at random";

    fn apply(traffic: &Traffic, percent: f32) -> Result<u64, Error> {
        network::add_loss(traffic, percent)
    }
}

faultline_sdk::export_fault!(PercentFault<Loss>);
