//! Combining concurrent appends into one write: callers that arrive while
//! a write is running queue their items, and when it ends one of them
//! writes everything queued in one statement and one commit. A store whose
//! every write pays a round trip and a durable commit (PostgreSQL's WAL
//! flush) pays it once per group instead of once per caller.
//!
//! Nothing is acknowledged before the write that holds it has returned
//! `Ok`: a caller returns only once its own group committed. If a group's
//! write fails, every member writes its own items again alone, so each
//! gets its own outcome (and a bad item fails only its own caller).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// One combining point, for appends of `T`s (see the module docs).
#[derive(Debug)]
pub(crate) struct Combiner<T> {
    state: Mutex<State<T>>,
    /// Signalled whenever a group's write ends.
    ended: Condvar,
}

#[derive(Debug)]
struct State<T> {
    /// Items for the next group, in arrival order.
    queue: Vec<T>,
    /// The group `queue` will be written as; replaced when a writer takes it.
    group: Arc<Group>,
    /// Whether a group is being written (by a caller outside the lock).
    writing: bool,
}

/// The outcome of one group's write, set once it ended.
#[derive(Debug, Default)]
struct Group {
    committed: OnceLock<bool>,
}

impl<T> Default for Combiner<T> {
    fn default() -> Self {
        Combiner {
            state: Mutex::new(State {
                queue: Vec::new(),
                group: Arc::default(),
                writing: false,
            }),
            ended: Condvar::new(),
        }
    }
}

impl<T: Clone> Combiner<T> {
    /// Appends `items` with `write`, sharing the write with concurrent
    /// callers; returns once a write holding them has committed. `write`
    /// must be all or nothing (one statement, one transaction): a failed
    /// group is written again, member by member.
    pub(crate) fn append<E>(
        &self,
        items: &[T],
        write: impl Fn(&[T]) -> Result<(), E>,
    ) -> Result<(), E> {
        if items.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        state.queue.extend_from_slice(items);
        let mine = state.group.clone();
        loop {
            if let Some(&committed) = mine.committed.get() {
                drop(state);
                // Our group failed under another caller: find out about
                // our own items by writing them alone.
                return if committed { Ok(()) } else { write(items) };
            }
            if !state.writing {
                // No write running and ours not written: ours is the
                // queued group (a group leaves the queue only with a
                // writer, which records its outcome before clearing
                // `writing`). Write it.
                let batch = std::mem::take(&mut state.queue);
                let group = std::mem::take(&mut state.group);
                state.writing = true;
                drop(state);
                let result = write(&batch);
                let mut state = self.lock();
                let _ = group.committed.set(result.is_ok());
                state.writing = false;
                drop(state);
                self.ended.notify_all();
                return match result {
                    // Others' items were in it: the error may be theirs.
                    Err(_) if batch.len() > items.len() => write(items),
                    result => result,
                };
            }
            state = self
                .ended
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The state; a panic in another caller (never while it held the lock
    /// with the queue half-changed: every change under it is a plain move)
    /// leaves it usable.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every caller's items are written before it returns, each exactly
    /// once, and concurrent callers share writes.
    #[test]
    fn every_item_is_written_once_before_its_caller_returns_and_writes_are_shared() {
        let combiner = Arc::new(Combiner::<usize>::default());
        let written = Arc::new(Mutex::new(Vec::<usize>::new()));
        let writes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (combiner, written, writes) =
                    (combiner.clone(), written.clone(), writes.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let item = t * 1000 + i;
                        combiner
                            .append(&[item], |batch| {
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                written.lock().unwrap().extend_from_slice(batch);
                                writes.fetch_add(1, Ordering::SeqCst);
                                Ok::<(), ()>(())
                            })
                            .unwrap();
                        assert!(
                            written.lock().unwrap().contains(&item),
                            "{item} not written"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = written.lock().unwrap().clone();
        all.sort_unstable();
        let expected: Vec<usize> = (0..8)
            .flat_map(|t| (0..200).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(all, expected, "an item was lost or written twice");
        let n = writes.load(Ordering::SeqCst);
        assert!(n < 8 * 200, "{n} writes for 1600 appends: none shared");
    }

    /// A failed group write fails its writer; the other members retry
    /// alone, so only the caller with the bad item sees an error.
    #[test]
    fn a_failed_group_leaves_each_member_its_own_outcome() {
        let combiner = Arc::new(Combiner::<i32>::default());
        let written = Arc::new(Mutex::new(Vec::<i32>::new()));
        let write = {
            let written = written.clone();
            move |batch: &[i32]| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                if batch.contains(&-1) {
                    return Err("bad item");
                }
                written.lock().unwrap().extend_from_slice(batch);
                Ok(())
            }
        };
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (combiner, write) = (combiner.clone(), write.clone());
                std::thread::spawn(move || {
                    let item = if t == 3 { -1 } else { t };
                    (item, combiner.append(&[item], &write))
                })
            })
            .collect();
        for t in threads {
            let (item, result) = t.join().unwrap();
            if item == -1 {
                assert_eq!(result, Err("bad item"));
            } else {
                assert_eq!(result, Ok(()), "item {item} failed with the bad one");
                assert!(written.lock().unwrap().contains(&item), "{item} lost");
            }
        }
    }
}
