//! The tower layer that writes one audit record per call on the admin
//! socket, and per attestation on the node API.
//!
//! The record is written before the caller can learn the outcome: before
//! the response headers go out when they carry the status (an error), and
//! before the trailers when the status comes last (a success). A caller
//! that goes away first leaves a record with status `Cancelled`.

use futures::future::{BoxFuture, Either};
use futures::FutureExt as _;
use http::{Request, Response};
use http_body_util::{BodyExt as _, StreamBody};
use tonic::body::Body;

use super::fields::{code_name, Fields};
use super::methods::{spec, Decode, MethodSpec};
use super::record::{AuditRecord, Caller};
use super::tee::{Copied, Message};
use super::AuditLog;
use crate::body_hook::Hooked;
use crate::clock::rfc3339_utc;
use crate::request_id::RequestId;

/// The node API method that attests an agent.
const ATTEST: &str = "/herald.node.v1.Node/Attest";

/// Which calls of a listener are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditScope {
    /// Every call (the admin socket).
    Every,
    /// Attestations only (the node API).
    Attestation,
}

/// Audits the calls of `scope` into `log`.
#[derive(Debug, Clone)]
pub(crate) struct AuditLayer {
    pub(super) log: AuditLog,
    pub(super) scope: AuditScope,
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Audited<S> {
        Audited {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`AuditLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Audited<S> {
    inner: S,
    layer: AuditLayer,
}

impl<S> tower::Service<Request<Body>> for Audited<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, S::Error>>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let covered = match self.layer.scope {
            AuditScope::Every => true,
            AuditScope::Attestation => path == ATTEST,
        };
        if !covered || !self.layer.log.is_enabled() {
            return Either::Left(self.inner.call(req));
        }
        let call = Call::new(self.layer.log.clone(), &req);
        let copy = call.request.clone();
        let response = self.inner.call(req.map(|b| Hooked::body(b, copy)));
        Either::Right(
            async move {
                let response = match response.await {
                    Ok(r) => r,
                    Err(e) => {
                        let message = "the service failed before answering".to_string();
                        call.finish(tonic::Code::Unknown, Some(message)).await;
                        return Err(e);
                    }
                };
                // Trailers-only: the status is in the headers (an error).
                if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                    call.finish_with(&status).await;
                    return Ok(response);
                }
                Ok(response.map(|body| watch_body(body, call)))
            }
            .boxed(),
        )
    }
}

/// The response body, with the record written before its trailers pass.
fn watch_body(body: Body, call: Call) -> Body {
    let frames = futures::stream::unfold(Some((body, Some(call))), |state| async move {
        let (mut body, mut call) = state?;
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(c) = call.as_ref().filter(|c| c.copies_response()) {
                    if let Some(data) = frame.data_ref() {
                        c.response.push(data);
                    }
                }
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(c) = call.take() {
                        let status = tonic::Status::from_header_map(trailers);
                        match status {
                            Some(status) => c.finish_with(&status).await,
                            None => c.finish(tonic::Code::Unknown, None).await,
                        }
                    }
                }
                Some((Ok(frame), Some((body, call))))
            }
            Some(Err(status)) => {
                if let Some(c) = call.take() {
                    c.finish_with(&status).await;
                }
                Some((Err(status), Some((body, None))))
            }
            None => {
                if let Some(c) = call.take() {
                    let message = "the response ended without a status".to_string();
                    c.finish(tonic::Code::Unknown, Some(message)).await;
                }
                None
            }
        }
    });
    Body::new(StreamBody::new(frames))
}

/// One audited call in flight.
struct Call {
    /// Taken when the record is written; a call dropped while it is still
    /// here was cancelled.
    pending: Option<Pending>,
    request: Copied,
    response: Copied,
}

struct Pending {
    log: AuditLog,
    method: String,
    spec: MethodSpec,
    caller: Caller,
    request_id: RequestId,
}

impl Call {
    fn new(log: AuditLog, req: &Request<Body>) -> Self {
        let method = req.uri().path().to_string();
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_default();
        Call {
            pending: Some(Pending {
                log,
                spec: spec(&method),
                method,
                caller: Caller::of(req.extensions()),
                request_id,
            }),
            request: Copied::default(),
            response: Copied::default(),
        }
    }

    fn copies_response(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.spec.response.is_some())
    }

    async fn finish_with(self, status: &tonic::Status) {
        let message = (status.code() != tonic::Code::Ok).then(|| status.message().to_string());
        self.finish(status.code(), message).await;
    }

    async fn finish(mut self, code: tonic::Code, message: Option<String>) {
        if let Some(p) = self.pending.take() {
            let record = self.record(&p, code, message);
            p.log.write(record, p.spec.mutating).await;
        }
    }

    /// The record of this call ending with `code`.
    fn record(&self, p: &Pending, code: tonic::Code, message: Option<String>) -> AuditRecord {
        let mut fields = Fields::default();
        let mut omitted = self
            .request
            .with(|m| decode(m, p.spec.request, &mut fields));
        if let (tonic::Code::Ok, Some(response)) = (code, p.spec.response) {
            let why = self.response.with(|m| decode(m, response, &mut fields));
            omitted = omitted.or(why);
        }
        let (mut fields, redactor) = fields.finish();
        if let Some(why) = omitted {
            fields.insert("fields_omitted".into(), why.into());
        }
        AuditRecord {
            time: rfc3339_utc(std::time::SystemTime::now()),
            request_id: p.request_id.to_string(),
            caller: p.caller.clone(),
            method: p.method.clone(),
            fields,
            status: code_name(code),
            message: message.map(|m| redactor.redact(&m)),
        }
    }
}

/// Decodes a copied message into `fields`; why it could not, if so.
fn decode(message: Message<'_>, decoder: Decode, fields: &mut Fields) -> Option<String> {
    match message {
        Message::Whole(bytes) => decoder(bytes, fields)
            .err()
            .map(|e| format!("the message does not decode: {e}")),
        // Refused before the request was read (a caller check): no fields.
        Message::Missing => None,
        Message::Omitted(why) => Some(why.to_string()),
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let message = "the caller went away before the call ended".to_string();
        let record = self.record(&p, tonic::Code::Cancelled, Some(message));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { p.log.write(record, p.spec.mutating).await });
        }
    }
}
