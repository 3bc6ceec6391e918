//! Experiments: history.
