//! Per-peer connection budgets, and the accept loop of every Unix socket
//! listener (the server's admin API, the dashboard socket): a connection
//! is taken only when the kernel names its peer's uid (SO_PEERCRED) and
//! that uid is within its budget, so one local user cannot exhaust a
//! listener for the others.
//!
//! It sits outside `server` because the HTTPS/Unix serving helpers in
//! `tls` accept through it too, and `tls` must not depend on the server.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

// === impl PeerCounter ===

/// Live connections per peer, each at most `max`.
#[derive(Debug)]
pub(crate) struct PeerCounter<K> {
    max: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// One connection's place in a [`PeerCounter`], given back on drop.
#[derive(Debug)]
pub(crate) struct PeerSlot<K: Hash + Eq> {
    counter: Arc<PeerCounter<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> PeerCounter<K> {
    /// A counter allowing `max` live connections per key.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PeerCounter {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection of `key`, or `None` when it already
    /// holds `max`.
    pub(crate) fn try_acquire(self: &Arc<Self>, key: K) -> Option<PeerSlot<K>> {
        // A panic elsewhere while holding the lock cannot leave the map
        // inconsistent (each update is one statement): keep using it.
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counter: self.clone(),
            key,
        })
    }

    /// The limit per key (for log messages).
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// The next connection accepted on the Unix socket `listener` whose peer
/// uid (SO_PEERCRED) is within its budget in `per_uid`, with that uid and
/// its slot; `None` once `stop` turns true. Connections whose peer the
/// kernel cannot tell, or whose uid holds its budget already, are logged
/// with `what` named and closed. Every Unix listener of the server accepts
/// through this.
pub(crate) async fn next_unix_peer(
    listener: &tokio::net::UnixListener,
    per_uid: &Arc<PeerCounter<u32>>,
    stop: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<(tokio::net::UnixStream, u32, PeerSlot<u32>)> {
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(stop) => return None,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(error = %crate::errors::Chain(&e), "{what}: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!(error = %crate::errors::Chain(&e), "{what}: no peer credentials; closing");
                continue;
            }
        };
        let Some(slot) = per_uid.try_acquire(uid) else {
            tracing::warn!(
                uid,
                max = per_uid.max(),
                "{what}: too many connections from this uid; closing the new one"
            );
            continue;
        };
        return Some((stream, uid, slot));
    }
}

impl<K: Hash + Eq> Drop for PeerSlot<K> {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_at_most_max_slots_and_gets_them_back() {
        let c = PeerCounter::new(2);
        let a = c.try_acquire(1u32).unwrap();
        let _b = c.try_acquire(1u32).unwrap();
        assert!(c.try_acquire(1u32).is_none());
        assert!(
            c.try_acquire(2u32).is_some(),
            "other peers are not affected"
        );
        drop(a);
        assert!(c.try_acquire(1u32).is_some());
    }
}
