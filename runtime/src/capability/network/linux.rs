//! Linux backend of the `network` capability.
