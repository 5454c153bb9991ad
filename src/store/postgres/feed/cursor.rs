//! Where a change feed reader is, as pure bookkeeping (no I/O), so that the
//! rule that no event is ever skipped is testable on its own.
//!
//! Event ids are drawn from a sequence when a transaction inserts its
//! event, and commit in another order: a read may show id 11 while id 10
//! is still invisible. The cursor hands on every id the first time a read
//! shows it, and remembers each id below the highest one seen that no read
//! has shown yet (a *gap*), with a *bound*: a transaction id assigned after
//! the read's snapshot was taken (the reader's own, drawn only when a read
//! opens gaps). An id can fill later only while the transaction that drew
//! it is running. That transaction took its transaction id *before* it
//! drew the event id (`herald_event` makes sure), and a later id was
//! already committed in the snapshot, so its transaction id is below the
//! bound. Once a snapshot's `xmin` (every transaction id below it has
//! finished) passes the bound, the drawer has committed — and the read in
//! that same snapshot showed the event — or rolled back: the gap is closed
//! then, never on a timer. (The snapshot's own `xmax` would not do: it is
//! one past the latest *finished* transaction, and a running one may hold
//! a higher id.) A long transaction holds only its own gaps open; events
//! committed meanwhile flow at once.

use std::collections::BTreeMap;

use crate::store::Change;

/// The reader's position: the highest id seen and the gaps below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The highest event id handed on (or known when the reader started).
    pub(crate) max_seen: i64,
    /// Ids below `max_seen` not shown by any read yet, each with the bound
    /// taken when it was first missed.
    pub(crate) gaps: BTreeMap<i64, i64>,
}

impl Cursor {
    /// A reader starting after `max_seen`, with `missing` (ids at or below
    /// it that the starting snapshot did not show) as gaps of `bound`.
    pub(crate) fn starting(max_seen: i64, missing: &[i64], bound: i64) -> Cursor {
        Cursor {
            max_seen,
            gaps: missing.iter().map(|id| (*id, bound)).collect(),
        }
    }

    /// Whether taking `rows` (in id order) opens gaps, so that the read
    /// needs a bound for them.
    pub(crate) fn opens_gaps(&self, rows: &[(i64, Change)]) -> bool {
        let mut top = self.max_seen;
        for (id, _) in rows {
            if *id > top + 1 {
                return true;
            }
            top = top.max(*id);
        }
        false
    }

    /// The gap ids, for the next read (which asks for them and for every id
    /// above `max_seen`).
    pub(crate) fn gap_ids(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Takes one read made in a snapshot whose `xmin` is given: `rows` in
    /// id order (`complete` if the read was not cut short by its limit),
    /// and the bound of the gaps it opens (see [`Cursor::opens_gaps`]).
    /// Returns the changes to hand on, each event exactly once.
    pub(crate) fn advance(
        &mut self,
        rows: Vec<(i64, Change)>,
        xmin: i64,
        bound: i64,
        complete: bool,
    ) -> Vec<Change> {
        let mut out = Vec::with_capacity(rows.len());
        for (id, change) in rows {
            if self.gaps.remove(&id).is_some() {
                out.push(change);
            } else if id > self.max_seen {
                for missing in self.max_seen + 1..id {
                    self.gaps.insert(missing, bound);
                }
                self.max_seen = id;
                out.push(change);
            }
        }
        // A read cut short may not have asked about every gap.
        if complete {
            self.gaps.retain(|_, missed_at| xmin <= *missed_at);
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

    /// One read: snapshot `xmin`, bound `bound` if the read opens gaps.
    fn read(c: &mut Cursor, ids: &[i64], xmin: i64, bound: i64) -> Vec<String> {
        let r = rows(ids);
        assert_eq!(c.opens_gaps(&r), {
            let mut probe = c.clone();
            let before = probe.gaps.len();
            probe.advance(r.clone(), 0, bound, false);
            probe.gaps.len() > before
        });
        names(&c.advance(r, xmin, bound, true))
    }

    #[test]
    fn a_late_id_is_handed_on_when_it_commits() {
        let mut c = Cursor::default();
        assert_eq!(read(&mut c, &[1, 2, 4], 100, 105), ["1", "2", "4"]);
        assert_eq!(c.gap_ids(), [3]);
        // Its transaction (below the bound 105) may still run at xmin 101.
        assert!(read(&mut c, &[], 101, 0).is_empty());
        assert_eq!(c.gap_ids(), [3]);
        assert_eq!(read(&mut c, &[3, 5], 101, 0), ["3", "5"]);
        assert!(c.gaps.is_empty());
        assert_eq!(c.max_seen, 5);
    }

    #[test]
    fn a_gap_closes_once_every_transaction_that_could_fill_it_finished() {
        let mut c = Cursor::default();
        read(&mut c, &[1, 3], 100, 105);
        // xmin 105: the bound's own transaction (105) may still run.
        read(&mut c, &[], 105, 0);
        assert_eq!(c.gap_ids(), [2]);
        // xmin 106: everything that could hold id 2 finished; it rolled back.
        read(&mut c, &[], 106, 0);
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn a_read_cut_short_closes_no_gap_and_nothing_is_handed_on_twice() {
        let mut c = Cursor::default();
        read(&mut c, &[1, 3], 100, 105);
        assert_eq!(names(&c.advance(rows(&[5]), 200, 200, false)), ["5"]);
        assert_eq!(
            c.gap_ids(),
            [2, 4],
            "a limited read asked about gaps it did not reach"
        );
        // Rows already handed on are not handed on again.
        assert!(c.advance(rows(&[1, 3, 5]), 201, 0, true).is_empty());
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn a_reader_starting_mid_stream_waits_for_ids_drawn_before_it() {
        let mut c = Cursor::starting(10, &[7], 105);
        assert!(read(&mut c, &[], 100, 0).is_empty());
        assert_eq!(read(&mut c, &[7, 11], 100, 0), ["7", "11"]);
    }
}
