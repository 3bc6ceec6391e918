//! Experiments: targets.
