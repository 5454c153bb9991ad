//! Waiting, for one request, until the cache can answer it: a request that
//! arrives during the agent's first sync is answered once the sync lands,
//! and never waits when no answer is coming (the server is unreachable),
//! or when SVIDs saved before a restart already answer it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

use crate::agent::cache::{Cache, CacheSnapshot};
use crate::registration::Selector;

/// Whether `s` answers a request from `caller` (None: a request that
/// needs no identity) without waiting any longer.
fn settled(s: &CacheSnapshot, caller: Option<&[Selector]>) -> bool {
    if s.server_unreachable || (s.ready && !s.restored) {
        return true;
    }
    // Restored from disk, the server not heard from yet: a caller with a
    // saved identity is served now; one without waits for the sync, which
    // may bring its entry.
    s.ready && caller.is_none_or(|c| s.identities.iter().any(|i| i.matches(c)))
}

/// A receiver positioned at the snapshot to answer from, and that
/// snapshot. Waits up to `timeout` for it to settle; then a restored
/// snapshot is answered from as it is, and a cache with nothing is
/// Unavailable. Unavailable at once when the cache holds nothing and the
/// server is known to be unreachable, rather than at the client's deadline.
pub(crate) async fn wait(
    cache: &Cache,
    timeout: Duration,
    caller: Option<&[Selector]>,
) -> Result<(watch::Receiver<Arc<CacheSnapshot>>, Arc<CacheSnapshot>), Status> {
    let mut rx = cache.subscribe();
    // The usual case, without arming a timer: the cache already answers.
    let now = rx.borrow_and_update().clone();
    if now.ready && settled(&now, caller) {
        return Ok((rx, now));
    }
    let waited = tokio::time::timeout(timeout, async {
        rx.wait_for(|s| settled(s, caller))
            .await
            .map(|snap| Arc::clone(&snap))
    })
    .await;
    let snap = match waited {
        Ok(Ok(snap)) => snap,
        Ok(Err(_)) => return Err(Status::unavailable("the identity cache was closed")),
        Err(_) => rx.borrow_and_update().clone(),
    };
    if snap.ready {
        return Ok((rx, snap));
    }
    if snap.server_unreachable {
        tracing::debug!("cache not ready and the server unreachable");
        return Err(Status::unavailable(
            "the agent cannot reach its server and holds no saved SVIDs",
        ));
    }
    tracing::debug!("cache not ready");
    Err(Status::unavailable(
        "the agent has not synced with its server yet",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::cache::tests::identity;
    use crate::spiffe::TrustDomain;

    /// A wait that must end on an event, never on its timeout.
    const LONG: Duration = Duration::from_secs(3_600);
    /// A wait that is meant to time out.
    const SHORT: Duration = Duration::from_millis(50);

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn sel(v: &str) -> Selector {
        Selector::new("unix", v).unwrap()
    }

    fn snapshot(uids: &[&str], restored: bool, unreachable: bool) -> CacheSnapshot {
        let mut s = CacheSnapshot::empty(td());
        s.identities = uids
            .iter()
            .map(|uid| identity(&uid.replace(':', "-"), vec![sel(uid)]))
            .collect();
        s.ready = true;
        s.restored = restored;
        s.server_unreachable = unreachable;
        s
    }

    #[tokio::test]
    async fn nothing_and_an_unreachable_server_is_unavailable_at_once() {
        let cache = Cache::new(td());
        let mut nothing = CacheSnapshot::empty(td());
        nothing.server_unreachable = true;
        cache.publish(nothing);
        let err = wait(&cache, LONG, Some(&[sel("uid:1")])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("cannot reach"), "{err:?}");

        let err = wait(&Cache::new(td()), SHORT, None).await.unwrap_err();
        assert!(err.message().contains("not synced"), "{err:?}");
    }

    #[tokio::test]
    async fn a_request_waits_for_the_first_sync_then_is_answered() {
        let cache = Cache::new(td());
        let pending = {
            let cache = cache.clone();
            tokio::spawn(async move { wait(&cache, LONG, Some(&[sel("uid:1")])).await })
        };
        tokio::task::yield_now().await;
        cache.publish(snapshot(&["uid:1"], false, false));
        let (_, snap) = pending.await.unwrap().unwrap();
        assert_eq!(snap.identities.len(), 1);
    }

    #[tokio::test]
    async fn a_restored_cache_answers_saved_callers_and_makes_others_wait_for_the_sync() {
        let cache = Cache::new(td());
        cache.publish(snapshot(&["uid:1"], true, false));
        let (_, snap) = wait(&cache, LONG, Some(&[sel("uid:1")])).await.unwrap();
        assert!(snap.restored, "a saved identity is served before any sync");
        let (_, snap) = wait(&cache, LONG, None).await.unwrap();
        assert!(snap.restored);

        // Nothing saved for uid:2: it waits for the sync, which brings it.
        let pending = {
            let cache = cache.clone();
            tokio::spawn(async move { wait(&cache, LONG, Some(&[sel("uid:2")])).await })
        };
        tokio::task::yield_now().await;
        cache.publish(snapshot(&["uid:1", "uid:2"], false, false));
        let (_, snap) = pending.await.unwrap().unwrap();
        assert!(!snap.restored);

        // Unless the server is unreachable, or the wait times out: then the
        // restored snapshot answers (and has nothing for the caller).
        cache.publish(snapshot(&["uid:1"], true, true));
        let (_, snap) = wait(&cache, LONG, Some(&[sel("uid:2")])).await.unwrap();
        assert!(snap.restored);
        cache.publish(snapshot(&["uid:1"], true, false));
        let (_, snap) = wait(&cache, SHORT, Some(&[sel("uid:2")])).await.unwrap();
        assert!(snap.restored);
    }
}
