//! Operator policy.
