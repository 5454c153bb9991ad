//! Giving memory back to the system after a signing burst.
//!
//! A thousand agents joining at once sign 100,000 SVIDs in a few seconds:
//! the store's write buffers, the batches and their responses come and go
//! on every thread, and glibc's allocator kept what they freed (a
//! 1,000-agent server stayed at ~650–820 MiB once steady, ~130 MiB of it
//! free but not returned; issue 15, item 3). Two things bound that:
//!
//! - [`crate::heap::tune_allocator`], once at start, before any thread:
//!   at most two malloc arenas (glibc makes up to eight per core, one per
//!   busy thread of the several hundred the blocking pool grows to in a
//!   burst, each keeping its own free pages).
//! - [`after_burst`] and [`run_trimmer`]: once the signing has gone quiet
//!   for a moment, `malloc_trim` ([`crate::heap::release_free_memory`])
//!   returns the free pages of every arena. It runs once per burst, on the
//!   blocking pool, never per call.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// How long the signing must be quiet before trimming.
const QUIET: Duration = Duration::from_millis(50);

/// The least time between two trims: a steady trickle of batches costs at
/// most one a second.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The smallest batch that counts as a burst: a few renewals leave little.
pub const BURST_SVIDS: usize = 16;

fn bursts() -> &'static Notify {
    static BURSTS: OnceLock<Notify> = OnceLock::new();
    BURSTS.get_or_init(Notify::new)
}

/// Says that a burst of work (a batch of at least [`BURST_SVIDS`]
/// signatures) just ended.
pub fn after_burst() {
    bursts().notify_one();
}

/// Trims the allocator once after each burst has been quiet for
/// [`QUIET`], until `shutdown`.
pub async fn run_trimmer(mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = bursts().notified() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        }
        // Wait out the rest of the burst.
        while tokio::time::timeout(QUIET, bursts().notified())
            .await
            .is_ok()
        {}
        let _ = tokio::task::spawn_blocking(trim).await;
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// Trims done, for the test.
#[cfg(test)]
static TRIMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Returns every arena's free pages to the system.
fn trim() {
    #[cfg(test)]
    TRIMS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    crate::heap::release_free_memory();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use tokio::sync::watch;

    use super::{after_burst, run_trimmer, TRIMS};

    /// Bursts end in a trim once quiet; the trimmer ends at shutdown.
    #[tokio::test]
    async fn a_quiet_burst_is_trimmed_and_shutdown_stops_the_trimmer() {
        let (stop, stopped) = watch::channel(false);
        let before = TRIMS.load(Ordering::SeqCst);
        let trimmer = tokio::spawn(run_trimmer(stopped));
        after_burst();
        after_burst();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TRIMS.load(Ordering::SeqCst) == before {
            assert!(Instant::now() < deadline, "no trim after a burst");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), trimmer)
            .await
            .expect("the trimmer did not stop at shutdown")
            .unwrap();
    }
}
