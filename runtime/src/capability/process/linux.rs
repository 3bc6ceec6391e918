//! Linux backend of the `process` capability.
