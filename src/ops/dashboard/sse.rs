//! `/dashboard/api/events`: server-sent events that tell an open page what
//! changed (`event: change`, `data: {"topic":"entries"}`), so that it
//! fetches that view again without a reload.
//!
//! A stream is the one answer that outlives the ops listener's 30 s
//! connection timeout, so it is bounded on its own: at most
//! [`MAX_STREAMS`] at once (the next gets 503 and the page falls back to
//! polling), each for at most [`LIFETIME`] (the browser reconnects by
//! itself), with a comment line every [`PING`] so a peer that went away is
//! noticed, and all of them end when the listener stops.

use std::time::Duration;

use futures::StreamExt as _;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{respond, text, Body, Dashboard, Topic};
use crate::tls::https_server::Connection;

/// Event streams open at once, over every peer.
pub(super) const MAX_STREAMS: usize = 8;
/// How long one stream lasts before the browser opens the next.
pub(super) const LIFETIME: Duration = Duration::from_secs(600);
/// How often an idle stream says something.
pub(super) const PING: Duration = Duration::from_secs(15);
/// How long the browser waits before reconnecting, milliseconds.
const RETRY_MS: u32 = 1000;

/// Opens an event stream on `connection`, or says 503 when too many are
/// open.
pub(super) fn open(dashboard: &Dashboard, connection: &Connection) -> Response<Body> {
    let Ok(permit) = dashboard.streams.clone().try_acquire_owned() else {
        tracing::info!(
            max = MAX_STREAMS,
            "dashboard: too many event streams; refusing one"
        );
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_STREAMS} event streams at once\n"),
        );
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("10"));
        return r;
    };
    connection.outlive_timeout();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut changes = dashboard.source.changes();
    let mut stop = dashboard.stop.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let hello = format!("retry: {RETRY_MS}\nevent: hello\ndata: {{}}\n\n");
        if tx.send(Bytes::from(hello)).await.is_err() {
            return;
        }
        let ends = tokio::time::sleep(LIFETIME);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
        tokio::pin!(ends);
        loop {
            let message = tokio::select! {
                () = crate::shutdown::stopped(&mut stop) => break,
                // The page went away: its body was dropped.
                () = tx.closed() => break,
                () = &mut ends => break,
                _ = ping.tick() => Bytes::from_static(b": ping\n\n"),
                change = changes.recv() => match change {
                    Ok(topic) => event(topic),
                    Err(broadcast::error::RecvError::Lagged(_)) => event(Topic::All),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
    let body = StreamBody::new(
        ReceiverStream::new(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))),
    );
    let mut r = respond(StatusCode::OK, "text/event-stream", body.boxed_unsync());
    // Proxies must pass events on as they come.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// One `change` event.
fn event(topic: Topic) -> Bytes {
    let data = serde_json::json!({ "topic": topic });
    Bytes::from(format!("event: change\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_topic() {
        assert_eq!(
            &event(Topic::Entries)[..],
            b"event: change\ndata: {\"topic\":\"entries\"}\n\n"
        );
    }
}
