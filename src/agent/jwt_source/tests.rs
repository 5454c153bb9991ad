use std::sync::atomic::AtomicBool;
use std::sync::RwLock;
use std::time::Instant;

use super::*;
use crate::clock::{Clock as _, FakeClock};

const T0: i64 = 1_800_000_000;

/// Answers like the server, numbering its tokens, with a 600 s life;
/// Unavailable while `down` is set.
struct CountingMinter {
    calls: Arc<AtomicU64>,
    clock: FakeClock,
    down: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl JwtMinter for CountingMinter {
    async fn mint(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<node::NewJwtsvidResponse, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("down"));
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now_unix();
        Ok(node::NewJwtsvidResponse {
            token: format!("{entry_id}/{}/{n}", audience.join(",")),
            expires_at: now + 600,
        })
    }
}

struct Source {
    src: Arc<NodeJwtSource>,
    clock: FakeClock,
    calls: Arc<AtomicU64>,
    epoch: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl Source {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn source() -> Source {
    let clock = FakeClock::new(T0);
    let calls = Arc::new(AtomicU64::new(0));
    let epoch = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let minter = CountingMinter {
        calls: calls.clone(),
        clock: clock.clone(),
        down: down.clone(),
    };
    let src = NodeJwtSource::with_minter(Box::new(minter), epoch.clone(), Arc::new(clock.clone()));
    Source {
        src: Arc::new(src),
        clock,
        calls,
        epoch,
        down,
    }
}

fn aud(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

async fn fetch(src: &NodeJwtSource, entry: &str, audience: &str) -> String {
    src.fetch_jwt_svid(entry, &aud(&[audience])).await.unwrap()
}

/// A source whose one token (e1, a) was asked for at T0 and is now at
/// its refresh point.
async fn one_token_due() -> Source {
    let s = source();
    fetch(&s.src, "e1", "a").await;
    s.clock.advance(300);
    s
}

#[tokio::test]
async fn tokens_are_cached_per_entry_and_audience_and_hot_ones_refreshed_in_the_background() {
    let s = source();
    let first = fetch(&s.src, "e1", "a").await;
    assert_eq!(first, "e1/a/0");
    s.clock.advance(299);
    assert_eq!(fetch(&s.src, "e1", "a").await, first);
    assert_eq!(s.calls(), 1);

    // Another audience or another entry is another token.
    assert_eq!(fetch(&s.src, "e1", "b").await, "e1/b/1");
    assert_eq!(fetch(&s.src, "e2", "a").await, "e2/a/2");

    // At half of its 600 s life a request is still answered from the
    // cache (the entry is hot), and the refresher re-mints it.
    s.clock.advance(1);
    assert_eq!(fetch(&s.src, "e1", "a").await, first);
    assert_eq!(s.calls(), 3);
    assert_eq!(s.src.refresh_due().await, 1, "only e1/a is due");
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/3");
    assert_eq!(s.calls(), 4);
}

#[tokio::test]
async fn an_entry_not_requested_for_a_lifetime_is_no_longer_refreshed() {
    let s = one_token_due().await;
    assert_eq!(s.src.refresh_due().await, 1);
    // Minted again at T0 + 300, due at T0 + 600; last asked for at T0, a
    // lifetime (600 s) before: cold.
    s.clock.advance(300);
    assert_eq!(s.src.refresh_due().await, 0);
    assert_eq!(s.calls(), 2);
    // A request then mints (the entry was cold), and heats it again.
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/2");
    s.clock.advance(300);
    assert_eq!(s.src.refresh_due().await, 1);
}

#[tokio::test]
async fn an_epoch_bump_drops_cached_tokens_and_re_mints_hot_ones() {
    let s = source();
    fetch(&s.src, "e1", "a").await;
    fetch(&s.src, "e1", "a").await;
    assert_eq!(s.calls(), 1);
    s.epoch.fetch_add(1, Ordering::SeqCst);
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/1");
    assert_eq!(s.calls(), 2);

    // The refresher does not wait for the half life of a tainted token.
    s.epoch.fetch_add(1, Ordering::SeqCst);
    assert_eq!(s.src.refresh_due().await, 1);
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/2");
    assert_eq!(s.calls(), 3);
}

#[tokio::test]
async fn while_the_server_cannot_mint_a_cached_token_serves_until_it_expires() {
    let s = source();
    let first = fetch(&s.src, "e1", "a").await;
    s.down.store(true, Ordering::SeqCst);
    s.clock.advance(300); // due for a refresh, which fails
    assert_eq!(s.src.refresh_due().await, 0);
    assert_eq!(fetch(&s.src, "e1", "a").await, first);
    s.clock.advance(299);
    assert_eq!(fetch(&s.src, "e1", "a").await, first);
    s.clock.advance(1); // expired
    let err = s.src.fetch_jwt_svid("e1", &aud(&["a"])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // Nothing cached for another audience: Unavailable at once.
    let err = s.src.fetch_jwt_svid("e1", &aud(&["b"])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    s.down.store(false, Ordering::SeqCst);
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/1");
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn the_refresher_task_re_mints_due_entries_and_stops_at_shutdown() {
    let s = one_token_due().await;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(s.src.clone().refresh_hot(stop_rx));
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.calls() < 2 {
        assert!(Instant::now() < deadline, "the refresher never re-minted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/1");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the refresher stops at shutdown")
        .unwrap();
}

#[tokio::test]
async fn without_a_connection_the_answer_is_unavailable() {
    let client: SharedClient = Arc::new(RwLock::new(None));
    let src = NodeJwtSource::new(
        client,
        Arc::new(AtomicU64::new(0)),
        Arc::new(FakeClock::new(T0)),
    );
    let err = src.fetch_jwt_svid("e1", &aud(&["a"])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("not connected"), "{}", err.message());
}
