//! A gRPC response or request body with something attached to its
//! polling: a guard held until the body is dropped, a span entered while
//! it is polled, a copy taken of what passes. One wrapper, so that each
//! listener layer only says what it attaches.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use tonic::body::Body;

/// One frame of a body, as [`HttpBody::poll_frame`] returns it.
pub(crate) type Polled = Poll<Option<Result<Frame<Bytes>, tonic::Status>>>;

/// What is attached to a [`Hooked`] body.
pub(crate) trait Hook: Send + Unpin + 'static {
    /// Polls `inner` for its next frame; by default just that, for a hook
    /// that only needs to live as long as the body.
    fn poll_frame(&mut self, inner: Pin<&mut Body>, cx: &mut Context<'_>) -> Polled {
        inner.poll_frame(cx)
    }
}

impl Hook for tracing::Span {
    /// Polls inside the span, so that what runs in the poll logs in it.
    fn poll_frame(&mut self, inner: Pin<&mut Body>, cx: &mut Context<'_>) -> Polled {
        let _entered = self.enter();
        inner.poll_frame(cx)
    }
}

/// A body with a [`Hook`].
pub(crate) struct Hooked<H> {
    inner: Body,
    hook: H,
}

impl<H: Hook> Hooked<H> {
    /// `inner` with `hook` attached.
    pub(crate) fn body(inner: Body, hook: H) -> Body {
        Body::new(Hooked { inner, hook })
    }
}

impl<H: Hook> HttpBody for Hooked<H> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        this.hook.poll_frame(Pin::new(&mut this.inner), cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
