//! Handing freed heap back to the kernel.
//!
//! glibc's malloc keeps what a burst of connections freed mapped in its
//! arenas (one per thread that allocated), so an agent that served two
//! thousand hostile streams kept tens of MiB after every client had left
//! (issue 10, attack 7). `malloc_trim` returns the free pages. It is called
//! when a listener has gone idle, off the request path, because it walks
//! every arena under its lock.

/// Returns free heap pages to the kernel (glibc only; elsewhere a no-op).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer from us; it walks glibc's own
    // arenas, each under its own lock, and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
