//! Experiments: experiment_file.
