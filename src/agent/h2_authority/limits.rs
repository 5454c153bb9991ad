//! What one caller may hold open on the Workload API socket, which every
//! local user can reach before any check: connections per uid, and how long
//! a connection may sit without a request in flight.
//!
//! Connections are counted by the peer uid the kernel reports (SO_PEERCRED),
//! so one user cannot starve another; the idle clock runs only while no
//! request is in flight, so a workload holding its X509-SVID stream open for
//! days is never cut off (HTTP/2 keepalive finds the dead ones).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Default for the decoded size of one header block (`workload_api_max_header_list_size`):
/// hyper's default, a few KiB above what gRPC clients send.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;
/// Default for `workload_api_max_connections_per_uid`: room for every pod of
/// a busy node running as root, far below what exhausts the agent.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 512;
/// Default for `workload_api_idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the socket must stay without connections before freed heap is
/// handed back: a burst of short calls ends in one trim, not one each.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Limits the shim enforces on each connection before HTTP/2 reaches tonic.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Largest decoded header list of one request (RFC 7541 accounting:
    /// name + value + 32 per field). The encoded block awaiting
    /// END_HEADERS may hold twice this many bytes, frame headers included.
    pub max_header_list_size: usize,
    /// Connections one uid may hold open at once; more are closed on accept.
    pub max_connections_per_uid: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl ConnLimits {
    /// The most encoded bytes of one header block the shim holds while it
    /// waits for END_HEADERS: HPACK never needs more than the decoded size,
    /// and the slack covers frame headers, padding and priority fields.
    pub(super) fn max_pending_block(&self) -> usize {
        self.max_header_list_size.saturating_mul(2)
    }
}

/// Open connections per peer uid.
#[derive(Debug, Default)]
pub(super) struct UidSlots {
    open: Mutex<HashMap<u32, usize>>,
    /// A heap trim is waiting for [`TRIM_AFTER`] to pass.
    trim_scheduled: AtomicBool,
}

impl UidSlots {
    /// Takes a slot for `uid`, or None when it already holds `max`.
    pub(super) fn acquire(self: &Arc<Self>, uid: u32, max: usize) -> Option<UidSlot> {
        let mut open = self.lock();
        let n = open.entry(uid).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(UidSlot {
            slots: self.clone(),
            uid,
        })
    }

    /// Connections `uid` holds open.
    #[cfg(test)]
    pub(super) fn open(&self, uid: u32) -> usize {
        self.lock().get(&uid).copied().unwrap_or(0)
    }

    /// Once the last connection has closed and none came back for
    /// [`TRIM_AFTER`], hands the heap it freed back to the kernel, so the
    /// agent's memory returns near its baseline when clients leave.
    fn trim_when_idle(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.trim_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(TRIM_AFTER).await;
            slots.trim_scheduled.store(false, Ordering::Release);
            if slots.lock().is_empty() {
                let _ = tokio::task::spawn_blocking(crate::heap::release_free_memory).await;
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, usize>> {
        // The map is updated in single statements; a panic elsewhere while
        // holding the lock cannot leave it half-written.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection of a uid; frees its slot when dropped.
#[derive(Debug)]
pub(super) struct UidSlot {
    slots: Arc<UidSlots>,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(n) = open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Forget the uid so the map does not grow with every user ever seen.
                open.remove(&self.uid);
            }
        }
        let idle = open.is_empty();
        drop(open);
        if idle {
            self.slots.trim_when_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_gets_at_most_max_slots_and_gets_them_back() {
        let slots = Arc::new(UidSlots::default());
        let held: Vec<_> = (0..3).map(|_| slots.acquire(1000, 3).unwrap()).collect();
        assert!(slots.acquire(1000, 3).is_none());
        // Another uid is not affected.
        let other = slots.acquire(1001, 3).unwrap();
        assert_eq!(slots.open(1000), 3);
        drop(held);
        drop(other);
        assert_eq!(slots.open(1000), 0);
        assert!(slots.lock().is_empty());
        assert!(slots.acquire(1000, 3).is_some());
    }
}
