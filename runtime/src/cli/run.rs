//! `faultline run EXPERIMENT`: run an experiment, or with `--dry-run` only its pre-run checks.
