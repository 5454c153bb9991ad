//! When to prepare, activate and retire authorities: a pure function of the
//! authorities' lifetimes, the clock, and what agents have acknowledged, so
//! the schedule is testable without waiting hours.
//!
//! The schedule follows SPIRE's (SPIFFE.md section 2.3), with one change:
//! activation is gated on propagation.
//! - Prepare the next authority (and publish it in the bundle) when the
//!   active one has `min(lifetime/2, 30 days)` left.
//! - Activate it when the active one has `min(lifetime/6, 7 days)` left, but
//!   only once every connected agent has acknowledged a bundle containing it,
//!   or once the activation deadline has passed (then with a warning naming
//!   the agents that lagged). Waiting is bounded so that activation always
//!   happens while the current authority can still sign.
//! - Retire an old authority from the bundle once it has expired: every SVID
//!   it signed expired no later than it did.

const DAY: i64 = 86_400;

/// One authority's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// NotBefore, unix seconds.
    pub not_before: i64,
    /// NotAfter, unix seconds.
    pub not_after: i64,
}

impl Window {
    fn lifetime(&self) -> i64 {
        (self.not_after - self.not_before).max(1)
    }

    /// When the successor is prepared.
    pub fn prepare_at(&self) -> i64 {
        self.not_after - (self.lifetime() / 2).min(30 * DAY)
    }

    /// When the successor is due to become active.
    pub fn activate_at(&self) -> i64 {
        self.not_after - (self.lifetime() / 6).min(7 * DAY)
    }
}

/// What the planner sees of one kind of authority (X.509 or JWT).
#[derive(Debug, Clone)]
pub struct SlotView {
    /// The active authority.
    pub active: Option<Window>,
    /// The prepared one, if any.
    pub prepared: Option<Window>,
    /// Old authorities by journal id.
    pub old: Vec<(String, Window)>,
}

/// Whether agents have caught up with the bundle that carries the prepared authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Propagation {
    /// Every connected agent acknowledged it (or none is connected).
    Complete,
    /// These agents have not acknowledged it yet.
    Lagging(Vec<String>),
}

/// One step to take now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// There is no usable active authority: make one and activate it at once.
    Bootstrap,
    /// Make the next authority and publish it.
    Prepare,
    /// Make the prepared authority the signing one.
    Activate {
        /// Activated by the deadline while these agents lagged.
        forced_past: Vec<String>,
    },
    /// Remove an expired old authority from the bundle and the journal.
    Retire(String),
}

/// Decides what to do at `now`. `deadline` is how long past the due time
/// activation may wait for lagging agents.
pub fn plan(slot: &SlotView, propagation: &Propagation, deadline: i64, now: i64) -> Vec<Action> {
    let mut actions: Vec<Action> = slot
        .old
        .iter()
        .filter(|(_, w)| w.not_after <= now)
        .map(|(id, _)| Action::Retire(id.clone()))
        .collect();
    let Some(active) = slot.active.filter(|a| a.not_after > now) else {
        // No active authority, or it expired (a server down for longer than a
        // lifetime): promote a valid prepared one, or start afresh.
        match slot.prepared {
            Some(p) if p.not_after > now => actions.push(Action::Activate {
                forced_past: vec![],
            }),
            _ => actions.push(Action::Bootstrap),
        }
        return actions;
    };
    match slot.prepared {
        None if now >= active.prepare_at() => actions.push(Action::Prepare),
        None => {}
        Some(_) if now >= active.activate_at() => {
            // Never wait past the point where the active authority could no
            // longer sign: at most half of its remaining time at the due point.
            let hard_limit = active.activate_at()
                + ((active.not_after - active.activate_at()) / 2).min(deadline);
            match propagation {
                Propagation::Complete => actions.push(Action::Activate {
                    forced_past: vec![],
                }),
                Propagation::Lagging(agents) if now >= hard_limit => {
                    actions.push(Action::Activate {
                        forced_past: agents.clone(),
                    })
                }
                Propagation::Lagging(_) => {}
            }
        }
        Some(_) => {}
    }
    actions
}

/// The next time the plan can change on its own (without an acknowledgement).
pub fn next_event(slot: &SlotView, deadline: i64, now: i64) -> i64 {
    let mut times: Vec<i64> = slot.old.iter().map(|(_, w)| w.not_after).collect();
    if let Some(a) = slot.active {
        times.push(a.not_after);
        if slot.prepared.is_none() {
            times.push(a.prepare_at());
        } else {
            times.push(a.activate_at());
            times.push(a.activate_at() + ((a.not_after - a.activate_at()) / 2).min(deadline));
        }
    }
    times
        .into_iter()
        .filter(|t| *t > now)
        .min()
        .unwrap_or(now + 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(nb: i64, na: i64) -> Window {
        Window {
            not_before: nb,
            not_after: na,
        }
    }

    fn view(active: Option<Window>, prepared: Option<Window>) -> SlotView {
        SlotView {
            active,
            prepared,
            old: vec![],
        }
    }

    #[test]
    fn schedule_for_a_24h_authority() {
        let a = w(0, 24 * 3600);
        assert_eq!(a.prepare_at(), 12 * 3600);
        assert_eq!(a.activate_at(), 20 * 3600);
        // Long lifetimes are capped at 30 and 7 days.
        let long = w(0, 365 * DAY);
        assert_eq!(long.prepare_at(), 335 * DAY);
        assert_eq!(long.activate_at(), 358 * DAY);
    }

    #[test]
    fn prepares_then_activates_when_propagated() {
        let a = w(0, 120);
        let done = Propagation::Complete;
        assert!(plan(&view(Some(a), None), &done, 30, 59).is_empty());
        assert_eq!(
            plan(&view(Some(a), None), &done, 30, 60),
            vec![Action::Prepare]
        );
        let p = Some(w(60, 180));
        assert!(plan(&view(Some(a), p), &done, 30, 99).is_empty());
        assert_eq!(
            plan(&view(Some(a), p), &done, 30, 100),
            vec![Action::Activate {
                forced_past: vec![]
            }]
        );
    }

    #[test]
    fn a_lagging_agent_holds_activation_until_the_deadline() {
        let a = w(0, 120);
        let p = Some(w(60, 180));
        let lag = Propagation::Lagging(vec!["spiffe://example.org/herald/agent/slow".into()]);
        assert!(plan(&view(Some(a), p), &lag, 5, 100).is_empty());
        assert!(plan(&view(Some(a), p), &lag, 5, 104).is_empty());
        assert_eq!(
            plan(&view(Some(a), p), &lag, 5, 105),
            vec![Action::Activate {
                forced_past: vec!["spiffe://example.org/herald/agent/slow".into()]
            }]
        );
        // A huge deadline is still bounded by half the remaining life.
        assert!(!plan(&view(Some(a), p), &lag, 10_000, 110).is_empty());
        assert_eq!(next_event(&view(Some(a), p), 5, 100), 105);
    }

    #[test]
    fn expired_or_missing_active_is_replaced() {
        let done = Propagation::Complete;
        assert_eq!(
            plan(&view(None, None), &done, 30, 0),
            vec![Action::Bootstrap]
        );
        assert_eq!(
            plan(&view(Some(w(0, 10)), None), &done, 30, 10),
            vec![Action::Bootstrap]
        );
        assert_eq!(
            plan(&view(Some(w(0, 10)), Some(w(5, 50))), &done, 30, 10),
            vec![Action::Activate {
                forced_past: vec![]
            }]
        );
    }

    #[test]
    fn old_authorities_retire_when_they_expire() {
        let slot = SlotView {
            active: Some(w(100, 220)),
            prepared: None,
            old: vec![("a".into(), w(0, 120)), ("b".into(), w(50, 170))],
        };
        assert_eq!(
            plan(&slot, &Propagation::Complete, 30, 130),
            vec![Action::Retire("a".into())]
        );
        assert_eq!(next_event(&slot, 30, 130), 160);
    }
}
