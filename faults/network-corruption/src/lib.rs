//! `network-corruption`: corrupts a share of egress packets; revert stops it.
//!
//! The parameters, validation, journalled change and revert are the SDK's `PercentFault`.

use faultline_sdk::Error;
use faultline_sdk::network::{self, PercentEffect, PercentFault, Traffic};

/// The `network-corruption` effect.
struct Corruption;

impl PercentEffect for Corruption {
    const NAME: &'static str = "network-corruption";
    const SUMMARY: &'static str =
        "Corrupts a share of egress packets (a flipped bit fails their checksum)";

    fn apply(traffic: &Traffic, percent: f32) -> Result<u64, Error> {
        network::add_corruption(traffic, percent)
    }
}

faultline_sdk::export_fault!(PercentFault<Corruption>);
