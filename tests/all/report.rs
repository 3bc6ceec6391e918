//! Experiments: report.
