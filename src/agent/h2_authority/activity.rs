//! Requests in flight per connection, so an idle connection can be told
//! from one holding a long stream: the shim only sees bytes, the server
//! only sees requests, and this joins the two. Each connection's
//! [`ConnInfo`] carries an [`Activity`]; the [`TrackRequests`] layer marks a
//! request in flight from its arrival until its response body ends or is
//! dropped.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use tokio::sync::watch;
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

/// Requests in flight on one connection.
#[derive(Debug)]
pub struct Activity {
    in_flight: watch::Sender<usize>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: watch::Sender::new(0),
        }
    }
}

impl Activity {
    /// Marks a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.send_modify(|n| *n += 1);
        ActivityGuard {
            activity: self.clone(),
        }
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut rx = self.in_flight.subscribe();
        loop {
            let busy = *rx.borrow_and_update() > 0;
            if busy {
                // The sender lives in `self`, so `changed` cannot fail here.
                let _ = rx.changed().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(timeout) => return,
                _ = rx.changed() => {}
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
        self.activity
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
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
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), &mut idle)
            .await
            .expect("idle once the request is done");
    }
}
