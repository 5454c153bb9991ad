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

/// Malloc arenas: enough that two cores rarely wait on one another.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Caps glibc's arenas at [`ARENAS`] (it makes up to eight per core, one
/// per busy thread, each keeping its own free pages: a server's blocking
/// pool grows to hundreds of threads in a signing burst). Call it before
/// the runtime starts its threads: arenas made before it stay. glibc
/// only; elsewhere a no-op. (A fixed mmap threshold was tried too: it
/// saved no more and cost ~15 % of the server's CPU in the burst.)
#[allow(unsafe_code)]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointer; M_ARENA_MAX is a documented
    // parameter and the value in range. A refusal (0) leaves glibc's
    // default, which is correct, only larger.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
