//! The Sync call, served beside tonic so that a large federated set goes out
//! to every agent as the same shared bytes.
//!
//! tonic encodes each message of a stream into a buffer of that stream's
//! own, and keeps the buffer for the stream's life: ten agents meant ten
//! encoded copies of a 4 MiB peer bundle, held while they stayed connected
//! (issue 18). Here each message is framed by hand: the agent's own part
//! of it (entries, removed IDs, the own bundle, the flags) is encoded per
//! stream, and the `federated_bundles` field is the encoding
//! [`super::FederatedWire`] made once, appended without a copy. Protobuf
//! allows it: a message is the concatenation of its fields, in any order.
//!
//! The request (what a resuming agent holds) is read here too, once the
//! agent is authenticated.
//!
//! Every other call of the node service goes to tonic unchanged.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame};
use prost::bytes::{BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use super::sync::SyncPart;
use super::NodeApi;
use crate::proto::{node, NODE_MAX_MESSAGE_SIZE};

/// The node service `S` (tonic's), with Sync served here.
#[derive(Clone)]
pub struct SharedSync<S> {
    inner: S,
    api: NodeApi,
}

impl<S> SharedSync<S> {
    /// `inner` for every call but Sync, which `api` serves here.
    pub fn new(inner: S, api: NodeApi) -> Self {
        SharedSync { inner, api }
    }
}

impl<S: NamedService> NamedService for SharedSync<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<Request<Body>> for SharedSync<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + NamedService,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let method = path.strip_prefix('/').and_then(|p| p.strip_prefix(S::NAME));
        if method != Some("/Sync") {
            return Box::pin(self.inner.call(req));
        }
        let api = self.api.clone();
        Box::pin(async move { Ok(serve_sync(api, req).await) })
    }
}

/// Authenticates the agent and answers with its stream of messages, or
/// with the refusal (a trailers-only response, as tonic sends).
async fn serve_sync(api: NodeApi, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let req = tonic::Request::from_http(Request::from_parts(parts, ()));
    match api.start_sync(&req, read_request(body)).await {
        Ok(rx) => {
            let body = SyncBody {
                rx,
                shared: None,
                ended: false,
            };
            let mut response = Response::new(Body::new(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The request: one uncompressed gRPC frame holding a `SyncRequest` (an
/// empty body, as no client sends, counts as an empty request).
async fn read_request(body: Body) -> Result<node::SyncRequest, Status> {
    let bad = |why: String| Status::invalid_argument(format!("the Sync request {why}"));
    let bytes = http_body_util::Limited::new(body, NODE_MAX_MESSAGE_SIZE + 5)
        .collect()
        .await
        .map_err(|e| bad(format!("cannot be read: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(node::SyncRequest::default());
    }
    let (head, message) = bytes
        .split_at_checked(5)
        .ok_or_else(|| bad("is a truncated gRPC frame".into()))?;
    if head[0] != 0 {
        return Err(Status::unimplemented(
            "compressed Sync requests are not supported",
        ));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len != message.len() {
        return Err(bad(format!(
            "frame announces {len} bytes but holds {}",
            message.len()
        )));
    }
    node::SyncRequest::decode(message).map_err(|e| bad(format!("does not decode: {e}")))
}

/// The response body: each queued message as a gRPC frame, then the
/// status in trailers.
struct SyncBody {
    rx: mpsc::Receiver<Result<SyncPart, Status>>,
    /// The shared federated bytes of the message whose head went last.
    shared: Option<Bytes>,
    ended: bool,
}

impl HttpBody for SyncBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(shared) = self.shared.take() {
            return Poll::Ready(Some(Ok(Frame::data(shared))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(part)) => match grpc_frame(part) {
                Ok((head, shared)) => {
                    self.shared = shared;
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                Err(status) => status,
            },
            Some(Err(status)) => status,
            // The stream ended on its own: the agent went away.
            None => Status::ok(""),
        };
        self.ended = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }
}

/// One message as a gRPC frame (uncompressed flag, length, message): the
/// head holds the flag, the length and the agent's own part; the shared
/// bytes follow as they are.
fn grpc_frame(part: SyncPart) -> Result<(Bytes, Option<Bytes>), Status> {
    let (own, shared) = part.into_parts();
    let len = own.encoded_len() + shared.as_ref().map_or(0, Bytes::len);
    // The parts are split to stay far below this (see `sync`).
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l as usize <= NODE_MAX_MESSAGE_SIZE)
        .ok_or_else(|| Status::internal(format!("a Sync message of {len} bytes is too large")))?;
    let mut head = BytesMut::with_capacity(5 + own.encoded_len());
    head.put_u8(0);
    head.put_u32(len);
    own.encode(&mut head)
        .map_err(|e| Status::internal(format!("encoding a Sync message failed: {e}")))?;
    Ok((head.freeze(), shared))
}

/// The trailers that carry `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only the message can fail to be a header value; the code alone
        // always is one.
        map.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    map
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;

    use super::*;
    use crate::proto::node;
    use crate::server::node_api::sync::split_update;
    use crate::server::node_api::FederatedWire;

    /// A hand-framed message decodes to what tonic would have sent.
    #[test]
    fn a_framed_message_is_the_update() {
        let bundles: Vec<_> = (0..3)
            .map(|n| node::Bundle {
                trust_domain: format!("td{n}.org"),
                x509_authorities: vec![vec![n; 100]],
                sequence: 7,
                ..Default::default()
            })
            .collect();
        let update = node::SyncUpdate {
            snapshot: true,
            complete: true,
            removed: vec!["gone".into()],
            bundle: Some(bundles[0].clone()),
            ..Default::default()
        };
        let set = Arc::new(FederatedWire::new(bundles.clone()));
        let mut parts = split_update(update.clone(), Some(set.clone()));
        assert_eq!(parts.len(), 1);
        let part = parts.remove(0);
        let expected = {
            let again = split_update(update, Some(set)).remove(0);
            again.into_update()
        };
        assert_eq!(expected.federated_bundles, bundles);
        let (head, shared) = grpc_frame(part).unwrap();
        let mut wire = head.to_vec();
        wire.extend_from_slice(&shared.unwrap());
        assert_eq!(wire[0], 0);
        let len = u32::from_be_bytes(wire[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, wire.len() - 5);
        assert_eq!(node::SyncUpdate::decode(&wire[5..]).unwrap(), expected);
    }

    fn body(bytes: Vec<u8>) -> Body {
        Body::new(http_body_util::Full::new(Bytes::from(bytes)))
    }

    fn framed(msg: &node::SyncRequest, flag: u8) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(msg.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&msg.encode_to_vec());
        out
    }

    /// The request is read from its gRPC frame; a bad frame is refused
    /// with a status saying why, never a panic.
    #[tokio::test]
    async fn the_request_is_read_from_its_frame() {
        let msg = node::SyncRequest {
            resume: true,
            held_bundle_sequence: 3,
            held_entries: vec![node::HeldEntry {
                id: "e".into(),
                revision: 2,
            }],
            ..Default::default()
        };
        assert_eq!(read_request(body(framed(&msg, 0))).await.unwrap(), msg);
        let empty = node::SyncRequest::default();
        assert_eq!(read_request(body(framed(&empty, 0))).await.unwrap(), empty);
        assert_eq!(read_request(body(Vec::new())).await.unwrap(), empty);

        let compressed = read_request(body(framed(&msg, 1))).await.unwrap_err();
        assert_eq!(compressed.code(), tonic::Code::Unimplemented);
        let mut short = framed(&msg, 0);
        short.pop();
        let err = read_request(body(short)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("announces"), "{err:?}");
        let err = read_request(body(vec![0, 0])).await.unwrap_err();
        assert!(err.message().contains("truncated"), "{err:?}");
        let mut garbage = vec![0, 0, 0, 0, 3];
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_request(body(garbage)).await.unwrap_err();
        assert!(err.message().contains("does not decode"), "{err:?}");
    }
}
