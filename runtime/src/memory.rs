//! Gives the heap memory the allocator keeps back to the kernel once the agent is idle again.
//!
//! glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up to eight
//! per core) for reuse. A run allocates from the tokio workers and the blocking pool, so after a
//! burst of runs an agent would otherwise sit at its peak for the rest of its life.
//! [`release_free_memory`] is called when a host's last execution ends
//! ([`crate::host::Running`]): an agent's runs and its experiments' faults alike.
//!
//! The one other module with `unsafe` (besides the compile cache): a single FFI call.

#![allow(unsafe_code)]

/// Returns every arena's free pages to the kernel (`malloc_trim(0)`); a no-op where the C
/// library is not glibc. Blocking (it walks every arena): call it from the blocking pool.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions. It takes each arena's lock, releases only
    // pages no allocation uses (madvise MADV_DONTNEED) and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
