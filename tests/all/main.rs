//! Faultline's integration tests: one binary, one module per topic.

// Test helpers fail by panicking, like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_api;
mod agent_experiments;
mod agent_transport;
mod authoring;
mod blast_radius;
mod cgroup;
mod cli;
mod command;
mod compat;
mod execution;
mod experiment_file;
mod experiments;
mod faults;
mod filesystem;
mod fleet;
mod history;
mod host;
mod hub;
mod limits;
mod live_view;
mod network;
mod policy;
mod probes;
mod prometheus;
mod recovery;
mod report;
mod targets;
mod ticks;
