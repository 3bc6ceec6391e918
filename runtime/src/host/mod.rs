//! Component host.
