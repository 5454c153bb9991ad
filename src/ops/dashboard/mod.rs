//! A read-only web dashboard on the operations listener: what a trust
//! domain holds and how it is doing (authorities and their rotation,
//! agents, entries, federation, and the findings of `herald check`), for
//! people who would rather look than read logs.
//!
//! This module is the web side only: the page and its assets (embedded
//! in the binary, no CDN: it works offline), JSON endpoints under
//! `/dashboard/api/`, a stream of server-sent events that tells the page
//! what changed, and who may look ([`access`]). What is shown comes from a
//! role's [`Source`]; the server's is `server::dashboard`, so that `ops`
//! never reaches into a role.
//!
//! Paths: `/` (the page), `/dashboard/*.js|css|svg` (its assets),
//! `/dashboard/api/{overview,agents,entries,federation,findings}` (JSON)
//! and `/dashboard/api/events` (`text/event-stream`). Every answer carries
//! a strict Content-Security-Policy and is never cached.

pub(crate) mod access;
mod api;
mod assets;
mod socket;
mod sse;

use std::convert::Infallible;
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, watch, Semaphore};

pub use self::api::{EntryField, EntryQuery, View};
pub use self::socket::{serve_socket, SocketError};
use crate::tls::https_server::Connection;

/// The body of every answer of the ops listener: whole, or streamed
/// (events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What changed, so the page knows to fetch its view again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Registration entries.
    Entries,
    /// Attested agents: connections, acknowledgements, evictions.
    Agents,
    /// The own bundle or the authorities (a rotation step).
    Bundle,
    /// Federation relationships, their refreshes, federated bundles.
    Federation,
    /// Anything: changes were missed.
    All,
}

/// Why a view could not be made (the store failed, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// What a role's dashboard shows. Views are JSON whose shape the page
/// (`assets/app.js`) knows; they must never carry a secret (no key, no
/// join token, no JWT).
pub trait Source: Send + Sync + 'static {
    /// The JSON of one view, made now.
    fn view(&self, view: View) -> BoxFuture<'_, Result<serde_json::Value, SourceError>>;
    /// What changes from now on, within about a second of the change.
    fn changes(&self) -> broadcast::Receiver<Topic>;
}

/// The dashboard of one ops listener.
pub(crate) struct Dashboard {
    source: Arc<dyn Source>,
    /// Open event streams, each holding a permit: at most
    /// [`sse::MAX_STREAMS`].
    streams: Arc<Semaphore>,
    /// The listener's stop signal, which ends the event streams.
    stop: watch::Receiver<bool>,
    /// Who may look over a Unix socket; `None` on the ops listener.
    admins: Option<access::Admins>,
}

/// Whether `path` is the dashboard's.
pub(crate) fn serves(path: &str) -> bool {
    path == "/" || path == "/dashboard" || path.starts_with("/dashboard/")
}

impl Dashboard {
    /// Shows `source` until `stop` turns true.
    pub(crate) fn new(source: Arc<dyn Source>, stop: watch::Receiver<bool>) -> Self {
        Dashboard {
            source,
            streams: Arc::new(Semaphore::new(sse::MAX_STREAMS)),
            stop,
            admins: None,
        }
    }

    /// Shows `source` on a Unix socket, to the uids `admins` allows.
    pub(crate) fn for_admins(
        source: Arc<dyn Source>,
        stop: watch::Receiver<bool>,
        admins: access::Admins,
    ) -> Self {
        Dashboard {
            admins: Some(admins),
            ..Dashboard::new(source, stop)
        }
    }

    /// Answers one GET of a dashboard path, after checking who asks.
    pub(crate) async fn answer<B>(&self, req: &Request<B>) -> Response<Body> {
        let connection = req.extensions().get::<Connection>();
        let host = req.headers().get(header::HOST);
        let checked = access::check_peer(connection.map(|c| c.peer), host, self.admins.as_ref());
        let connection = match (checked, connection) {
            (Ok(()), Some(connection)) => connection,
            (Err(refusal), _) => {
                tracing::warn!(%refusal, "dashboard request refused");
                return text(StatusCode::FORBIDDEN, format!("forbidden: {refusal}\n"));
            }
            // check() refuses a request without a peer.
            (Ok(()), None) => return text(StatusCode::FORBIDDEN, "forbidden\n".into()),
        };
        let path = req.uri().path();
        match path.strip_prefix("/dashboard/api/") {
            // A HEAD would hold a stream's place for nothing.
            Some("events") if req.method() != http::Method::GET => {
                text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into())
            }
            Some("events") => sse::open(self, connection),
            Some(name) => api::answer(self.source.as_ref(), name, req.uri().query()).await,
            None => assets::answer(path),
        }
    }
}

/// An answer with the headers every dashboard answer carries: nothing is
/// cached, nothing is sniffed, framed, referred or loaded from elsewhere.
fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

fn whole(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", whole(body))
}

#[cfg(test)]
pub(crate) mod tests;
