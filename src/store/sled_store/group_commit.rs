//! Group commit: writers that finish at about the same time share one
//! flush. Every write path ends by making its write durable (sled's flush
//! and an `fdatasync`, ~100 µs or more); one flush covers every write
//! applied before it started, so a writer that finds such a flush has
//! finished after its own write returns at once, and a writer that must
//! flush covers everyone who wrote before it. Nothing is acknowledged
//! before a flush that covers it has succeeded: only the number of
//! flushes changes (one per concurrent group instead of one per write).
//!
//! Only a write that can apply while a flush runs joins the next group:
//! sled's batches and transactions take its global exclusive lock, which
//! waits for a flush in progress (sled holds the shared side through the
//! disk write), so the hot path (the issuance log) uses plain inserts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Writes numbered in the order they finished applying, and how far the
/// flushes have made them durable.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    /// Writes applied so far (each takes the next number once applied).
    applied: AtomicU64,
    /// Every write numbered up to this is durable. Held during a flush, so
    /// at most one flush runs and the others wait to see what it covered.
    durable: Mutex<u64>,
}

impl GroupCommit {
    /// Called once the caller's write is applied: returns when a flush
    /// that started after that point has succeeded, running `flush` itself
    /// if none has.
    pub(super) fn commit<E>(&self, flush: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let mine = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
        // A panic in another flush leaves the number as it was (too low
        // at worst, which only costs a flush): keep going.
        let mut durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        if *durable >= mine {
            return Ok(());
        }
        // Every write numbered up to `upto` was applied before this line,
        // so the flush below covers it.
        let upto = self.applied.load(Ordering::SeqCst);
        flush()?;
        *durable = upto;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Each writer's value is in the "disk" when its commit returns, and
    /// concurrent writers need fewer flushes than writes.
    #[test]
    fn every_write_is_flushed_before_commit_returns_and_flushes_are_shared() {
        let group = Arc::new(GroupCommit::default());
        let memory = Arc::new(Mutex::new(Vec::<usize>::new()));
        let disk = Arc::new(Mutex::new(Vec::<usize>::new()));
        let flushes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (group, memory, disk, flushes) =
                    (group.clone(), memory.clone(), disk.clone(), flushes.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let value = t * 1000 + i;
                        memory.lock().unwrap().push(value);
                        group
                            .commit(|| {
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                *disk.lock().unwrap() = memory.lock().unwrap().clone();
                                flushes.fetch_add(1, Ordering::SeqCst);
                                Ok::<(), ()>(())
                            })
                            .unwrap();
                        assert!(disk.lock().unwrap().contains(&value), "{value} not durable");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 8 * 200, "{n} flushes for 1600 writes: none shared");
    }

    /// A failed flush makes nothing durable: the next writer flushes again.
    #[test]
    fn a_failed_flush_is_not_counted() {
        let group = GroupCommit::default();
        assert_eq!(group.commit(|| Err("disk full")), Err("disk full"));
        let mut ran = false;
        group
            .commit(|| {
                ran = true;
                Ok::<(), ()>(())
            })
            .unwrap();
        assert!(ran, "the write after a failed flush was not flushed");
    }
}
