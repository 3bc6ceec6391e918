//! Faultline's integration tests: one binary, one module per topic.

mod cli;
mod host;
mod network;
mod cgroup;
mod recovery;
