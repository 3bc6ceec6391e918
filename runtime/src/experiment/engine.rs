//! The experiment engine.
