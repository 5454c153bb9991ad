//! The shape shared by the three streaming RPCs: send the first response at
//! once, then a full-state response whenever a new cache snapshot changes
//! what this caller would receive, until the client goes away, the
//! response becomes an error (e.g. the identities are gone), or the
//! server shuts down.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::Status;
use tracing::Instrument as _;

use crate::agent::cache::CacheSnapshot;

/// A boxed server stream, as the generated trait wants it.
pub(super) type ResponseStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

struct State<R, F> {
    first: Option<R>,
    last: Option<R>,
    snapshots: watch::Receiver<Arc<CacheSnapshot>>,
    stop: watch::Receiver<bool>,
    build: F,
    span: tracing::Span,
    done: bool,
}

/// A stream that yields `first`, then `build(snapshot)` for each later
/// snapshot, skipping responses identical to the last one sent. An error
/// from `build` is sent and ends the stream; so does shutdown (as
/// Unavailable, so clients reconnect to the next agent).
pub(super) fn watch_stream<R, F>(
    first: R,
    snapshots: watch::Receiver<Arc<CacheSnapshot>>,
    stop: watch::Receiver<bool>,
    build: F,
    span: tracing::Span,
) -> ResponseStream<R>
where
    R: Clone + PartialEq + Send + 'static,
    F: Fn(&CacheSnapshot) -> Result<R, Status> + Send + 'static,
{
    let state = State {
        first: Some(first),
        last: None,
        snapshots,
        stop,
        build,
        span,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| {
        let span = st.span.clone();
        async move {
            let item = next(&mut st).await?;
            Some((item, st))
        }
        .instrument(span)
    }))
}

async fn next<R, F>(st: &mut State<R, F>) -> Option<Result<R, Status>>
where
    R: Clone + PartialEq,
    F: Fn(&CacheSnapshot) -> Result<R, Status>,
{
    if st.done {
        return None;
    }
    if let Some(first) = st.first.take() {
        st.last = Some(first.clone());
        tracing::debug!("sent first response");
        return Some(Ok(first));
    }
    loop {
        tokio::select! {
            changed = st.snapshots.changed() => {
                if changed.is_err() {
                    st.done = true;
                    return Some(Err(Status::unavailable("the identity cache was closed")));
                }
            }
            _ = stopped(&mut st.stop) => {
                st.done = true;
                tracing::debug!("ending stream: the Workload API is shutting down");
                return Some(Err(Status::unavailable("the Workload API is shutting down")));
            }
        }
        let snap = st.snapshots.borrow_and_update().clone();
        if !snap.ready {
            continue;
        }
        match (st.build)(&snap) {
            Ok(resp) if st.last.as_ref() == Some(&resp) => continue,
            Ok(resp) => {
                tracing::debug!(generation = snap.generation, "sent update");
                st.last = Some(resp.clone());
                return Some(Ok(resp));
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "ending stream");
                st.done = true;
                return Some(Err(status));
            }
        }
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
