//! Faultline's integration tests: one binary, one module per topic.

mod cli;
mod faults;
mod host;
mod network;
mod cgroup;
mod hub;
