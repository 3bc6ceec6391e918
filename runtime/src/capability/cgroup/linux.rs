//! Linux backend of the `cgroup` capability.
