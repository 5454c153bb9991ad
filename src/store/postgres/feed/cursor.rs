//! Where a change feed reader is, as pure bookkeeping (no I/O), so that the
//! rule that no event is ever skipped is testable on its own.
//!
//! Event ids are drawn from a sequence when a transaction inserts its
//! event, and commit in another order: a read may show id 11 while id 10
//! is still invisible. The cursor hands on every id the first time a read
//! shows it, and remembers each id below the highest one seen that no read
//! has shown yet (a *gap*), with the `xmax` of the snapshot in which it was
//! first missed. An id can fill later only while the transaction that drew
//! it is running. That transaction took its transaction id *before* it
//! drew the event id (`herald_event` makes sure), and a later id was
//! already committed when the gap was seen, so its transaction id is below
//! that snapshot's `xmax`. Once a snapshot's `xmin` (every transaction id
//! below it has finished) reaches that `xmax`, the drawer has committed —
//! and the read in that same snapshot showed the event — or rolled back:
//! the gap is closed then, never on a timer. A long transaction holds only
//! its own gaps open; events committed meanwhile flow at once.

use std::collections::BTreeMap;

use crate::store::Change;

/// One snapshot's bounds, as `pg_current_snapshot()` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Every transaction id below this one has finished.
    pub(crate) xmin: i64,
    /// Every transaction id at or above this one had not started.
    pub(crate) xmax: i64,
}

/// The reader's position: the highest id seen and the gaps below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The highest event id handed on (or known when the reader started).
    pub(crate) max_seen: i64,
    /// Ids below `max_seen` not shown by any read yet, each with the `xmax`
    /// of the snapshot that first missed it.
    pub(crate) gaps: BTreeMap<i64, i64>,
}

impl Cursor {
    /// A reader starting after `max_seen`, with `missing` (ids at or below
    /// it that the starting snapshot did not show) as gaps.
    pub(crate) fn starting(max_seen: i64, missing: &[i64], at: Snapshot) -> Cursor {
        Cursor {
            max_seen,
            gaps: missing.iter().map(|id| (*id, at.xmax)).collect(),
        }
    }

    /// The gap ids, for the next read (which asks for them and for every id
    /// above `max_seen`).
    pub(crate) fn gap_ids(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Takes one read made in snapshot `at`: `rows` in id order (`complete`
    /// if the read was not cut short by its limit). Returns the changes to
    /// hand on, each event exactly once.
    pub(crate) fn advance(
        &mut self,
        rows: Vec<(i64, Change)>,
        at: Snapshot,
        complete: bool,
    ) -> Vec<Change> {
        let mut out = Vec::with_capacity(rows.len());
        for (id, change) in rows {
            if self.gaps.remove(&id).is_some() {
                out.push(change);
            } else if id > self.max_seen {
                for missing in self.max_seen + 1..id {
                    self.gaps.insert(missing, at.xmax);
                }
                self.max_seen = id;
                out.push(change);
            }
        }
        // A read cut short may not have asked about every gap.
        if complete {
            self.gaps.retain(|_, missed_at| at.xmin < *missed_at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[i64]) -> Vec<(i64, Change)> {
        ids.iter()
            .map(|id| (*id, Change::Authority(id.to_string())))
            .collect()
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Authority(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    const S1: Snapshot = Snapshot {
        xmin: 100,
        xmax: 105,
    };

    #[test]
    fn a_late_id_is_handed_on_when_it_commits() {
        let mut c = Cursor::default();
        assert_eq!(
            names(&c.advance(rows(&[1, 2, 4]), S1, true)),
            ["1", "2", "4"]
        );
        assert_eq!(c.gap_ids(), [3]);
        // Its transaction (below xmax 105) is still running at xmin 101.
        let s2 = Snapshot {
            xmin: 101,
            xmax: 110,
        };
        assert!(c.advance(rows(&[]), s2, true).is_empty());
        assert_eq!(c.gap_ids(), [3]);
        assert_eq!(names(&c.advance(rows(&[3, 5]), s2, true)), ["3", "5"]);
        assert!(c.gaps.is_empty());
        assert_eq!(c.max_seen, 5);
    }

    #[test]
    fn a_gap_closes_once_every_transaction_that_could_fill_it_finished() {
        let mut c = Cursor::default();
        c.advance(rows(&[1, 3]), S1, true);
        // xmin 104 < 105: the drawer may still be running.
        c.advance(
            rows(&[]),
            Snapshot {
                xmin: 104,
                xmax: 120,
            },
            true,
        );
        assert_eq!(c.gap_ids(), [2]);
        // xmin 105: everything that could hold id 2 finished; it rolled back.
        c.advance(
            rows(&[]),
            Snapshot {
                xmin: 105,
                xmax: 120,
            },
            true,
        );
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn a_read_cut_short_closes_no_gap_and_nothing_is_handed_on_twice() {
        let mut c = Cursor::default();
        c.advance(rows(&[1, 3]), S1, true);
        let late = Snapshot {
            xmin: 200,
            xmax: 200,
        };
        assert_eq!(names(&c.advance(rows(&[5]), late, false)), ["5"]);
        assert_eq!(
            c.gap_ids(),
            [2, 4],
            "a limited read asked about gaps it did not reach"
        );
        // Rows already handed on are not handed on again.
        assert!(c.advance(rows(&[1, 3, 5]), late, true).is_empty());
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn a_reader_starting_mid_stream_waits_for_ids_drawn_before_it() {
        let mut c = Cursor::starting(10, &[7], S1);
        assert!(c.advance(rows(&[]), S1, true).is_empty());
        assert_eq!(names(&c.advance(rows(&[7, 11]), S1, true)), ["7", "11"]);
    }
}
