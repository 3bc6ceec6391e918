//! Test support: a real `faultline agent` on loopback. Stub: to be written.
