//! A tower layer that counts a connection's open streams (from the request
//! until the response body ends) in the [`Activity`] its [`ConnInfo`]
//! carries, so that the connection's watchdog knows when it is idle.

use std::marker::PhantomData;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::body::Body;

use super::connections::{ConnInfo, StreamGuard};
use crate::body_hook::{Hook, Hooked};

/// Wraps a service so that each call counts as an open stream of its
/// connection (whose connect info is `ConnInfo<T>`).
pub(crate) struct TrackStreamsLayer<T>(PhantomData<fn() -> T>);

impl<T> TrackStreamsLayer<T> {
    pub(crate) fn new() -> Self {
        TrackStreamsLayer(PhantomData)
    }
}

impl<T> Clone for TrackStreamsLayer<T> {
    fn clone(&self) -> Self {
        TrackStreamsLayer(PhantomData)
    }
}

impl<S, T> tower::Layer<S> for TrackStreamsLayer<T> {
    type Service = TrackStreams<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackStreams {
            inner,
            _info: PhantomData,
        }
    }
}

/// See [`TrackStreamsLayer`].
pub(crate) struct TrackStreams<S, T> {
    inner: S,
    _info: PhantomData<fn() -> T>,
}

impl<S: Clone, T> Clone for TrackStreams<S, T> {
    fn clone(&self) -> Self {
        TrackStreams {
            inner: self.inner.clone(),
            _info: PhantomData,
        }
    }
}

impl<S, T, B> tower::Service<Request<B>> for TrackStreams<S, T>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = req
            .extensions()
            .get::<ConnInfo<T>>()
            .map(|info| info.activity.stream_opened());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| match guard {
                Some(guard) => Hooked::body(inner, guard),
                None => inner,
            }))
        })
    }
}

/// A response body holds its stream open in the count until it is dropped.
impl Hook for StreamGuard {}
