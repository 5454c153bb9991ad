//! Requests in flight per connection, so an idle connection can be told
//! from one holding a long stream: the shim only sees bytes, the server
//! only sees requests, and this joins the two. Each connection's
//! [`ConnInfo`] carries an [`Activity`]; the [`TrackRequests`] layer marks a
//! request in flight from its arrival until its response body ends or is
//! dropped.
//!
//! The count is kept lazily: a request only updates two atomics, and the
//! connection's idle timer re-reads them when it fires instead of being
//! woken by every request. A busy connection used to cost its reader task
//! two wake-ups and a timer re-arm per request; now its timer fires once
//! per timeout. The timeout is still exact: a connection closes when no
//! request has been in flight for the whole timeout, never earlier, and
//! no later than the timer's own granularity once that holds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::transport::server::UdsConnectInfo;

/// What the server learns about a shimmed connection: the peer
/// credentials of the real socket and the connection's request counter.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer credentials of the Unix socket.
    pub uds: UdsConnectInfo,
    /// Requests in flight on this connection.
    pub activity: Arc<Activity>,
}

/// Requests in flight on one connection, and when that count last changed.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Nanoseconds from `origin` to the last change of `in_flight`.
    last_change: AtomicU64,
    origin: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_change: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl Activity {
    /// Marks a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ActivityGuard {
            activity: self.clone(),
        }
    }

    /// Records that the count changed now.
    fn touch(&self) {
        // u64 nanoseconds last 584 years: a connection does not.
        let since = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_change.fetch_max(since, Ordering::SeqCst);
    }

    /// When the count last changed.
    fn last_change(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last_change.load(Ordering::SeqCst))
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        loop {
            let wake = if self.in_flight.load(Ordering::SeqCst) > 0 {
                // Busy: whatever ends it, idleness starts no earlier than
                // now, so the earliest the connection can be idle long
                // enough is a whole timeout away.
                Instant::now().checked_add(timeout)
            } else {
                // A guard records the time before it decrements the
                // count, so having read zero, this is when it last fell.
                let idle_until = self.last_change().checked_add(timeout);
                if idle_until.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                idle_until
            };
            match wake {
                Some(wake) => tokio::time::sleep_until(wake.into()).await,
                // A timeout past what the clock can represent never ends.
                None => std::future::pending().await,
            }
        }
    }
}

/// A request in flight; see [`Activity::begin`].
#[derive(Debug)]
pub struct ActivityGuard {
    activity: Arc<Activity>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The tower layer of [`TrackRequests`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackRequestsLayer;

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackRequests { inner }
    }
}

/// Marks each request in flight on its connection's [`Activity`] until its
/// response body is done, and exposes the connection's
/// [`UdsConnectInfo`] to the handlers.
#[derive(Debug, Clone)]
pub struct TrackRequests<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for TrackRequests<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let info = req.extensions().get::<ConnInfo>().cloned();
        let guard = info.map(|info| {
            req.extensions_mut().insert(info.uds);
            info.activity.begin()
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                // The guard lives as long as the body: it moves into the
                // closure that passes each frame through.
                Some(guard) => response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _held = &guard;
                        frame
                    }))
                }),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_counts_time_without_a_request_in_flight() {
        let activity = Arc::new(Activity::default());
        let guard = activity.begin();
        let idle = activity.idle_for(Duration::from_millis(50));
        tokio::pin!(idle);
        // A request in flight keeps the connection from ever being idle.
        assert!(tokio::time::timeout(Duration::from_millis(500), &mut idle)
            .await
            .is_err());
        let ended = Instant::now();
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), &mut idle)
            .await
            .expect("idle once the request is done");
        assert!(
            ended.elapsed() >= Duration::from_millis(50),
            "closed before a whole timeout without a request"
        );
    }

    #[tokio::test]
    async fn requests_shorter_than_the_timeout_keep_the_connection_open() {
        let activity = Arc::new(Activity::default());
        // Ten times the gap between requests, so that only a stall of the
        // test's own thread longer than 450 ms could close it early.
        let timeout = Duration::from_millis(500);
        let idle = activity.idle_for(timeout);
        tokio::pin!(idle);
        // A short request every 50 ms for 1 s: never 500 ms without one,
        // although none is in flight when the timer looks.
        for _ in 0..20 {
            tokio::select! {
                () = &mut idle => panic!("closed while requests kept arriving"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            drop(activity.begin());
        }
        let last = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), &mut idle)
            .await
            .expect("idle once the requests stop");
        assert!(last.elapsed() >= timeout, "closed before a whole timeout");
    }
}
