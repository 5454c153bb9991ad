//! [`serve_unix`]: the bounded HTTP/1.1 of [`super::serve`] on a Unix
//! socket, whose peers are known by uid (SO_PEERCRED) rather than address.

use std::error::Error as StdError;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::{
    serve_connection, spawn_within, with_connection, Connection, ConnectionError, Limits, Peer,
};
use crate::peer_budget::{next_unix_peer, PeerCounter};

/// Accepts connections on the Unix socket `listener` until `stop` turns
/// true, and serves `service` on each in plain HTTP/1.1 within `limits`, as
/// [`serve`] does; the connection budget is per peer uid, and every
/// request carries its [`Connection`] with [`Peer::Unix`], for the service
/// to check the uid on every request.
pub async fn serve_unix<S, B>(
    listener: UnixListener,
    limits: Limits,
    service: S,
    stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut stop = stop;
    let per_uid = PeerCounter::new(limits.max_connections_per_peer);
    while let Some((stream, uid, slot)) =
        next_unix_peer(&listener, &per_uid, &mut stop, "dashboard socket").await
    {
        let limits = limits.clone();
        let timeout = limits.connection_timeout;
        let info = Connection::of(Peer::Unix { uid });
        let service = with_connection(service.clone(), info.clone());
        let connection = async move {
            let _slot = slot;
            serve_connection(stream, &limits, service).await?;
            Ok::<_, ConnectionError>(())
        };
        let span = tracing::info_span!("connection", uid);
        spawn_within(timeout, info, connection, span);
    }
}
