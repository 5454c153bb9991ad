//! The agent's JWT-SVID cache as pure bookkeeping, time passed in: which
//! token answers a request, which entries are hot (asked for recently) and
//! due for a background refresh, and what is dropped.
//!
//! A token is minted for an (entry, audience list) pair and served until
//! half its life has passed. An entry is *hot* while it has been requested
//! within the last lifetime of its token: a workload that asks at least
//! once per token lifetime keeps its entry hot, and the refresher re-mints
//! a hot entry at its half life (or at once when a JWT key was tainted),
//! so such a workload never waits on the server for a JWT it asked for
//! before (SPIRE #4829). An entry that is not hot is not refreshed: it is
//! served until its refresh point, minted again by the next request after
//! that, and dropped once expired. At most [`CAPACITY`] entries are kept;
//! when full, the one requested least recently makes room, so the
//! background minting is bounded too.

use std::collections::HashMap;

/// How many (entry, audience) tokens are kept, hot or not.
pub(super) const CAPACITY: usize = 1024;

/// An identity's entry ID and the audience list, as requested.
pub(super) type Key = (String, Vec<String>);

/// One minted token and what decides its fate.
#[derive(Debug, Clone)]
struct Cached {
    token: String,
    /// When it was minted, unix seconds.
    minted_at: i64,
    /// From then on, a request mints again unless the entry is hot.
    refresh_at: i64,
    expires_at: i64,
    /// The taint epoch it was minted in: from another epoch it is not served.
    epoch: u64,
    /// When a workload last asked for it (0: never, only refreshed).
    requested_at: i64,
}

impl Cached {
    fn usable(&self, now: i64, epoch: u64) -> bool {
        self.expires_at > now && self.epoch == epoch
    }

    /// Requested within the last lifetime of its token.
    fn hot(&self, now: i64) -> bool {
        let lifetime = (self.expires_at - self.minted_at).max(1);
        self.requested_at > 0 && self.requested_at > now - lifetime
    }
}

/// What a request gets from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Serve this token. `due`: it is past its refresh point (the entry is
    /// hot, so the refresher should be running for it: wake it).
    Serve { token: String, due: bool },
    /// Mint a new token; serve this one if minting fails.
    Mint { fallback: Option<String> },
}

/// The cached tokens.
#[derive(Debug, Default)]
pub(super) struct Tokens {
    entries: HashMap<Key, Cached>,
}

impl Tokens {
    /// The answer to a request for `key` at `now`, in taint epoch `epoch`;
    /// marks the entry requested.
    pub(super) fn lookup(&mut self, key: &Key, now: i64, epoch: u64) -> Lookup {
        let Some(c) = self.entries.get_mut(key).filter(|c| c.usable(now, epoch)) else {
            return Lookup::Mint { fallback: None };
        };
        let was_hot = c.hot(now);
        c.requested_at = now;
        if c.refresh_at > now || was_hot {
            return Lookup::Serve {
                token: c.token.clone(),
                due: c.refresh_at <= now,
            };
        }
        Lookup::Mint {
            fallback: Some(c.token.clone()),
        }
    }

    /// Caches `token` for `key`, minted at `now` in `epoch`. `requested`:
    /// minted for a request (which marks the entry requested), rather than
    /// by the refresher. Drops what can no longer be served and, if still
    /// full, the entry requested least recently.
    pub(super) fn insert(
        &mut self,
        key: Key,
        token: String,
        expires_at: i64,
        (now, epoch): (i64, u64),
        requested: bool,
    ) {
        let requested_at = match (requested, self.entries.get(&key)) {
            (true, _) => now,
            (false, Some(old)) => old.requested_at,
            // Refreshed, but dropped meanwhile: cached, not hot.
            (false, None) => 0,
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= CAPACITY {
            self.prune(now, epoch);
            if self.entries.len() >= CAPACITY {
                let coldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, c)| c.requested_at)
                    .map(|(k, _)| k.clone());
                if let Some(coldest) = coldest {
                    self.entries.remove(&coldest);
                }
            }
        }
        self.entries.insert(
            key,
            Cached {
                token,
                minted_at: now,
                refresh_at: now + (expires_at - now) / 2,
                expires_at,
                epoch,
                requested_at,
            },
        );
    }

    /// The hot entries to re-mint at `now`: past their refresh point, or
    /// minted in an older taint epoch.
    pub(super) fn due(&self, now: i64, epoch: u64) -> Vec<Key> {
        self.entries
            .iter()
            .filter(|(_, c)| c.hot(now) && (c.refresh_at <= now || c.epoch != epoch))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether any entry is hot (the refresher then keeps ticking).
    pub(super) fn any_hot(&self, now: i64) -> bool {
        self.entries.values().any(|c| c.hot(now))
    }

    /// Drops every entry that can no longer be served and is not hot (a
    /// hot one from an older epoch stays, to be re-minted).
    pub(super) fn prune(&mut self, now: i64, epoch: u64) {
        self.entries
            .retain(|_, c| c.usable(now, epoch) || (c.hot(now) && c.expires_at > now));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn key(entry: &str, aud: &str) -> Key {
        (entry.to_string(), vec![aud.to_string()])
    }

    fn served(l: Lookup) -> String {
        match l {
            Lookup::Serve { token, .. } => token,
            other => panic!("not served: {other:?}"),
        }
    }

    #[test]
    fn a_token_is_served_until_its_refresh_point_then_minted_unless_hot() {
        let mut t = Tokens::default();
        let k = key("e", "a");
        assert_eq!(t.lookup(&k, T0, 0), Lookup::Mint { fallback: None });
        t.insert(k.clone(), "t1".into(), T0 + 100, (T0, 0), true);
        assert_eq!(served(t.lookup(&k, T0 + 49, 0)), "t1");
        // At half life a request is served from the cache while the entry
        // is hot (requested within the last 100 s), and says it is due.
        assert_eq!(
            t.lookup(&k, T0 + 50, 0),
            Lookup::Serve {
                token: "t1".into(),
                due: true
            }
        );
        // The refresher re-mints it; the request time stays T0 + 50.
        t.insert(k.clone(), "t2".into(), T0 + 150, (T0 + 50, 0), false);
        assert_eq!(served(t.lookup(&k, T0 + 99, 0)), "t2");
        // Not requested for a lifetime (100 s) by its refresh point: a
        // request past it mints, with the cached token as its fallback.
        let mut quiet = Tokens::default();
        quiet.insert(k.clone(), "q1".into(), T0 + 100, (T0, 0), true);
        quiet.insert(k.clone(), "q2".into(), T0 + 150, (T0 + 50, 0), false);
        assert_eq!(
            quiet.lookup(&k, T0 + 120, 0),
            Lookup::Mint {
                fallback: Some("q2".into())
            }
        );
        assert_eq!(
            quiet.lookup(&k, T0 + 150, 0),
            Lookup::Mint { fallback: None },
            "expired"
        );
    }

    #[test]
    fn hot_entries_are_due_at_half_life_and_cold_ones_never() {
        let mut t = Tokens::default();
        let (hot, cold) = (key("e", "hot"), key("e", "cold"));
        t.insert(hot.clone(), "h1".into(), T0 + 100, (T0, 0), true);
        t.insert(cold.clone(), "c1".into(), T0 + 100, (T0, 0), true);
        assert!(t.due(T0 + 49, 0).is_empty());
        assert_eq!(t.due(T0 + 50, 0).len(), 2, "both requested at T0");
        // The refresher re-mints the hot one; it keeps its request time.
        t.insert(hot.clone(), "h2".into(), T0 + 150, (T0 + 50, 0), false);
        t.insert(cold.clone(), "c2".into(), T0 + 150, (T0 + 50, 0), false);
        t.lookup(&hot, T0 + 60, 0);
        // At T0 + 100 the cold one was last asked for 100 s ago (its
        // lifetime): no longer hot, so no longer refreshed.
        assert_eq!(t.due(T0 + 100, 0), vec![hot.clone()]);
        assert!(t.any_hot(T0 + 100));
        assert!(!t.any_hot(T0 + 160 + 100));
        t.insert(hot.clone(), "h3".into(), T0 + 200, (T0 + 100, 0), false);
        // Once expired and not hot, the cold one is dropped.
        t.prune(T0 + 150, 0);
        assert_eq!(t.len(), 1);
        assert_eq!(served(t.lookup(&hot, T0 + 150, 0)), "h3");
    }

    #[test]
    fn a_taint_makes_hot_entries_due_and_drops_cold_ones() {
        let mut t = Tokens::default();
        let (hot, cold) = (key("e", "hot"), key("e", "cold"));
        t.insert(hot.clone(), "h".into(), T0 + 100, (T0, 0), true);
        t.insert(cold.clone(), "c".into(), T0 + 100, (T0 - 200, 0), false);
        assert_eq!(t.due(T0 + 1, 1), vec![hot.clone()]);
        assert_eq!(t.lookup(&hot, T0 + 1, 1), Lookup::Mint { fallback: None });
        t.prune(T0 + 1, 1);
        assert_eq!(t.len(), 1, "the hot one stays to be re-minted");
        assert!(t.due(T0 + 1, 1).contains(&hot));
    }

    #[test]
    fn the_cache_is_capped_and_drops_the_least_recently_requested() {
        let mut t = Tokens::default();
        for i in 0..CAPACITY {
            let now = T0 + i as i64;
            t.insert(
                key("e", &i.to_string()),
                "t".into(),
                now + 10_000,
                (now, 0),
                true,
            );
        }
        let now = T0 + CAPACITY as i64;
        t.lookup(&key("e", "0"), now, 0);
        t.insert(key("e", "new"), "t".into(), now + 10_000, (now, 0), true);
        assert_eq!(t.len(), CAPACITY);
        assert!(matches!(
            t.lookup(&key("e", "0"), now, 0),
            Lookup::Serve { .. }
        ));
        assert_eq!(
            t.lookup(&key("e", "1"), now, 0),
            Lookup::Mint { fallback: None },
            "requested least recently: dropped"
        );
    }
}
