//! Command-line interface.
pub mod hub;
