//! The task that removes what has expired from the store on a schedule:
//! registration entries past their expiry (their deletion is announced
//! like any other, so they leave every agent's Sync stream and every
//! workload's), join tokens past theirs, and issuance records some time
//! after their certificate expired. What to remove is a pure function of
//! the clock ([`plan`]); [`run`] only applies it and sleeps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::state::{ServerEvent, ServerState};
use crate::clock::now_unix;
use crate::config::server::PruneConfig;
use crate::errors::Chain;

/// The cut-offs of one sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Entries whose expiry is at or before this second go.
    pub entries_expired_at: i64,
    /// Join tokens whose expiry is at or before this second go.
    pub tokens_expired_at: i64,
    /// Issuance records whose certificate expired before this second go.
    pub issuances_before: i64,
    /// When the next sweep is due.
    pub next_at: i64,
}

/// What to remove at `now`. Entries and tokens go as soon as they expire:
/// nothing may use them after that. Issuance records stay for the
/// retention, so a serial seen in a log can still be traced to its entry
/// and agent for a while after the certificate expired.
pub fn plan(config: &PruneConfig, now: i64) -> Sweep {
    Sweep {
        entries_expired_at: now,
        tokens_expired_at: now,
        issuances_before: now.saturating_sub(config.issuance_retention),
        next_at: now.saturating_add(config.interval.max(1)),
    }
}

/// Sweeps every `config.interval` until `stop` turns true. A failed step
/// is logged and tried again at the next sweep.
pub async fn run(state: Arc<ServerState>, config: PruneConfig, mut stop: watch::Receiver<bool>) {
    loop {
        let sweep = plan(&config, now_unix());
        let st = state.clone();
        match tokio::task::spawn_blocking(move || apply(&st, &sweep)).await {
            Ok(()) => {}
            Err(e) => tracing::error!(error = %Chain(&e), "pruning task failed"),
        }
        let wait = u64::try_from(sweep.next_at - now_unix())
            .unwrap_or(0)
            .max(1);
        tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
        }
    }
}

/// Runs one sweep against the store (blocking: every removal ends in an
/// fsync).
fn apply(state: &ServerState, sweep: &Sweep) {
    let store = state.store.as_ref();
    match store.prune_expired_entries(sweep.entries_expired_at) {
        Ok(pruned) if pruned.is_empty() => {}
        Ok(pruned) => {
            let ids: Vec<&str> = pruned.iter().map(|e| e.id.as_str()).collect();
            tracing::info!(count = pruned.len(), entries = %ids.join(","), "pruned expired registration entries");
            state.publish(ServerEvent::EntriesChanged);
        }
        Err(e) => {
            tracing::error!(error = %Chain(&e), "pruning expired registration entries failed")
        }
    }
    match store.prune_join_tokens(sweep.tokens_expired_at) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "pruned expired join tokens"),
        Err(e) => tracing::error!(error = %Chain(&e), "pruning expired join tokens failed"),
    }
    match store.prune_issuances(sweep.issuances_before) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "pruned issuance records past their retention"),
        Err(e) => tracing::error!(error = %Chain(&e), "pruning the issuance log failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile as _;
    use crate::server::state::test_state;

    #[test]
    fn the_plan_prunes_expired_things_and_keeps_issuances_for_the_retention() {
        let config = PruneConfig {
            interval: 60,
            issuance_retention: 86_400,
        };
        assert_eq!(
            plan(&config, 1_000_000),
            Sweep {
                entries_expired_at: 1_000_000,
                tokens_expired_at: 1_000_000,
                issuances_before: 1_000_000 - 86_400,
                next_at: 1_000_060,
            }
        );
        // No retention: records go once their certificate expired; the
        // interval is never below a second.
        let eager = PruneConfig {
            interval: 0,
            issuance_retention: 0,
        };
        let sweep = plan(&eager, 500);
        assert_eq!((sweep.issuances_before, sweep.next_at), (500, 501));
        // Extreme values do not overflow.
        let huge = PruneConfig {
            interval: i64::MAX,
            issuance_retention: i64::MAX,
        };
        let sweep = plan(&huge, 10);
        assert_eq!(
            (sweep.issuances_before, sweep.next_at),
            (10 - i64::MAX, i64::MAX)
        );
    }

    #[test]
    fn the_keys_default_and_are_validated_by_name() {
        use crate::config::ServerConfig;
        let base = "trust_domain = \"example.org\"\ndata_dir = \"/tmp/x\"\n";
        let parse = |extra: &str| {
            ServerConfig::parse(
                std::path::Path::new("server.toml"),
                &format!("{base}{extra}"),
            )
        };
        assert_eq!(parse("").unwrap().prune, PruneConfig::default());
        let set = parse("prune_interval = \"5s\"\nissuance_retention = \"0s\"\n").unwrap();
        assert_eq!(
            set.prune,
            PruneConfig {
                interval: 5,
                issuance_retention: 0
            }
        );
        let err = parse("prune_interval = \"0s\"\n").unwrap_err().to_string();
        assert!(err.contains("prune_interval"), "{err}");
        let err = parse("issuance_retention = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("issuance_retention"), "{err}");
    }

    /// One sweep over a real store: what expired goes, the rest stays.
    #[test]
    fn a_sweep_removes_what_the_plan_says() {
        use crate::registration::{RegistrationEntry, Selector};

        use crate::spiffe::SpiffeId;
        use crate::store::{DataStore, IssuanceRecord, JoinToken, SledStore};

        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let now = now_unix();
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let entry = |n: u32, expires_at: Option<i64>| RegistrationEntry {
            expires_at,
            ..RegistrationEntry::new(
                id(&format!("spiffe://example.org/w/{n}")),
                id("spiffe://example.org/herald/agent/a"),
                vec![Selector::parse(&format!("unix:uid:{n}")).unwrap()],
            )
        };
        let expired = store.create_entry(entry(1, Some(now - 1))).unwrap();
        let live = store.create_entry(entry(2, Some(now + 3600))).unwrap();
        for (token, expires_at) in [("old", now - 1), ("new", now + 600)] {
            store
                .create_join_token(JoinToken {
                    token: token.into(),
                    expires_at,
                    agent_id: None,
                })
                .unwrap();
        }
        let record = |serial: &str, not_after: i64| IssuanceRecord {
            serial: serial.into(),
            spiffe_id: id("spiffe://example.org/w/1"),
            agent_id: None,
            entry_id: None,
            not_after,
            issued_at: not_after - 3600,
        };
        store
            .append_issuances(&[record("0a", now - 2 * 86_400), record("0b", now - 60)])
            .unwrap();
        let state = test_state(store);
        let mut events = state.subscribe();
        let config = PruneConfig {
            interval: 60,
            issuance_retention: 86_400,
        };
        apply(&state, &plan(&config, now));

        let store = state.store.as_ref();
        assert_eq!(store.get_entry(&expired.id).unwrap(), None);
        assert!(store.get_entry(&live.id).unwrap().is_some());
        assert_eq!(events.try_recv().unwrap(), ServerEvent::EntriesChanged);
        assert!(matches!(
            store.consume_join_token("old", now - 10),
            Err(crate::store::StoreError::NotFound { .. })
        ));
        assert!(store.consume_join_token("new", now).is_ok());
        assert_eq!(store.get_issuance("0a").unwrap(), None);
        assert!(
            store.get_issuance("0b").unwrap().is_some(),
            "within the retention"
        );
    }
}
