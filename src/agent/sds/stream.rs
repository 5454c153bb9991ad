//! Drives one SDS stream, whichever variant: a task reads the client's
//! requests and follows the agent's cache, hands both to the variant's
//! state machine ([`Protocol`]: `sotw` or `delta`), and queues what it
//! answers. The stream ends when the client goes, when the caller is no
//! longer entitled to anything (the status says why, as on the Workload
//! API), or at shutdown (Unavailable, so the client reconnects).

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use super::resources::{secret_type_url, Catalogue, Validation};
use crate::agent::cache::CacheSnapshot;
use crate::config::SdsSettings;
use crate::registration::Selector;

/// The most resource names one subscription may hold: far more than any
/// sidecar asks for (a handful), and a bound on what one stream keeps.
pub(super) const MAX_NAMES: usize = 1024;

/// Responses queued for a client that is slow to read them. Each holds
/// the full state, so a short queue loses nothing.
const QUEUE: usize = 4;

/// A boxed server stream, as the generated trait wants it.
pub(super) type ResponseStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// Whether a request calls for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// No: an ACK, a NACK, a stale request.
    Nothing,
    /// Yes: a new subscription.
    Now,
    /// Only if what the subscription holds changed (a new cache snapshot).
    IfChanged,
}

/// One xDS variant's state machine for one stream.
pub(super) trait Protocol: Send + 'static {
    /// What the client sends.
    type Request: Send + 'static;
    /// What the server answers.
    type Response: Send + 'static;
    /// Takes in one request.
    fn on_request(&mut self, req: Self::Request) -> Result<Due, Status>;
    /// What to send from `cat`, if anything.
    fn respond(&mut self, cat: &Catalogue, due: Due) -> Option<Self::Response>;
    /// The client's node, as last sent.
    fn node(&self) -> Option<&Node>;
    /// Whether the first request has arrived.
    fn started(&self) -> bool;
}

/// Refuses a request for anything but secrets (an empty type URL means them).
pub(super) fn check_type_url(type_url: &str) -> Result<(), Status> {
    if type_url.is_empty() || type_url == secret_type_url() {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "this is the Secret Discovery Service: type_url {type_url:?} is not {}",
        secret_type_url()
    )))
}

/// Logs what a request says of the last response: a NACK (`error` set)
/// as a warning, since what was sent is not sent again; an ACK (a nonce,
/// no error) at debug level.
pub(super) fn log_answer(nonce: &str, version: &str, error: Option<&RpcStatus>) {
    match error {
        Some(e) => tracing::warn!(
            nonce,
            code = e.code,
            error = %e.message,
            "the client rejected the secrets sent (NACK); they are not sent again"
        ),
        None if !nonce.is_empty() => tracing::debug!(nonce, version, "ACK"),
        None => {}
    }
}

/// Who a stream serves, and the cache it follows.
pub(super) struct Subscriber {
    /// The cache, positioned at `snap`.
    pub(super) snapshots: watch::Receiver<Arc<CacheSnapshot>>,
    /// The snapshot answered from.
    pub(super) snap: Arc<CacheSnapshot>,
    /// The caller's selectors, attested once when the stream opened.
    pub(super) selectors: Vec<Selector>,
    /// Resource names and validation contexts.
    pub(super) settings: Arc<SdsSettings>,
    /// Turns true at shutdown.
    pub(super) stop: watch::Receiver<bool>,
}

impl Subscriber {
    /// What the caller may receive now, shaped for `node`.
    pub(super) fn catalogue(&self, node: Option<&Node>) -> Result<Catalogue, Status> {
        let validation = Validation::for_node(node, self.settings.disable_spiffe_cert_validation);
        Catalogue::build(&self.snap, &self.selectors, &self.settings, validation)
    }
}

/// Serves one stream: `requests` in, the returned stream out.
pub(super) fn serve<P: Protocol>(
    proto: P,
    requests: Streaming<P::Request>,
    sub: Subscriber,
    span: tracing::Span,
) -> ResponseStream<P::Response>
where
    Streaming<P::Request>: Send,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(
        async move {
            let mut stop = sub.stop.clone();
            if let Err(status) = drive(proto, requests, sub, &tx).await {
                tracing::debug!(code = ?status.code(), message = status.message(), "ending stream");
                tokio::select! {
                    _ = tx.send(Err(status)) => {}
                    _ = crate::shutdown::stopped(&mut stop) => {}
                }
            }
        }
        .instrument(span),
    );
    Box::pin(ReceiverStream::new(rx))
}

/// Sends `resp`; false once the client is gone.
async fn send<R>(
    tx: &mpsc::Sender<Result<R, Status>>,
    stop: &mut watch::Receiver<bool>,
    resp: R,
) -> Result<bool, Status> {
    tokio::select! {
        sent = tx.send(Ok(resp)) => Ok(sent.is_ok()),
        _ = crate::shutdown::stopped(stop) => Err(shutting_down()),
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the agent is shutting down")
}

async fn drive<P: Protocol>(
    mut proto: P,
    mut requests: Streaming<P::Request>,
    mut sub: Subscriber,
    tx: &mpsc::Sender<Result<P::Response, Status>>,
) -> Result<(), Status> {
    let mut stop = sub.stop.clone();
    let mut reading = true;
    loop {
        let due = tokio::select! {
            next = requests.message(), if reading => match next {
                Ok(Some(req)) => proto.on_request(req)?,
                Ok(None) => {
                    // The client closed its side; it may still read updates.
                    reading = false;
                    Due::Nothing
                }
                Err(status) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "request stream ended");
                    return Ok(());
                }
            },
            changed = sub.snapshots.changed() => {
                if changed.is_err() {
                    return Err(Status::unavailable("the identity cache was closed"));
                }
                let snap = sub.snapshots.borrow_and_update().clone();
                if !snap.ready || !proto.started() {
                    continue;
                }
                sub.snap = snap;
                Due::IfChanged
            }
            _ = crate::shutdown::stopped(&mut stop) => return Err(shutting_down()),
            _ = tx.closed() => return Ok(()),
        };
        if due == Due::Nothing {
            continue;
        }
        let cat = sub.catalogue(proto.node())?;
        if let Some(resp) = proto.respond(&cat, due) {
            if !send(tx, &mut stop, resp).await? {
                return Ok(());
            }
        }
    }
}
