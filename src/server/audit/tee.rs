//! A copy of the first gRPC message a body carries, taken as the body is
//! read (by tonic for the request, by hyper for the response), so that the
//! audit log can decode the fields of a call without holding up its bytes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::Body as _;
use tonic::body::Body;

use crate::body_hook::{Hook, Polled};

/// The largest message copied: a 100,000-entry import (about 15 MiB) still
/// has its fields recorded; beyond, the record says the fields were left out.
const MAX_COPY: usize = 16 * 1024 * 1024;

/// The gRPC message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

/// What a [`Copied`] copy holds once the call ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message<'a> {
    /// The message bytes.
    Whole(&'a [u8]),
    /// No complete message went by.
    Missing,
    /// The message is compressed, or larger than what is copied.
    Omitted(&'static str),
}

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Set once the message was found too large to copy.
    too_large: bool,
}

/// A shared copy of the first message of a body.
#[derive(Debug, Clone, Default)]
pub(super) struct Copied(Arc<Mutex<Buffer>>);

impl Copied {
    /// Takes in what went by, up to the end of the first message.
    pub(super) fn push(&self, data: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buf.too_large {
            return;
        }
        let want = match message_len(&buf.bytes) {
            Some(len) if len > MAX_COPY => {
                buf.too_large = true;
                buf.bytes = Vec::new();
                return;
            }
            Some(len) => PREFIX + len,
            None => PREFIX,
        };
        let missing = want.saturating_sub(buf.bytes.len());
        let take = missing.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        if take < data.len() && buf.bytes.len() == PREFIX {
            // The prefix just completed: copy the rest of the message too.
            drop(buf);
            self.push(&data[take..]);
        }
    }

    /// Runs `f` on the copied message.
    pub(super) fn with<T>(&self, f: impl FnOnce(Message<'_>) -> T) -> T {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buf.too_large {
            return f(Message::Omitted("the message is larger than 16 MiB"));
        }
        match (buf.bytes.first(), message_len(&buf.bytes)) {
            (Some(0), Some(len)) if buf.bytes.len() == PREFIX + len => {
                f(Message::Whole(&buf.bytes[PREFIX..]))
            }
            (Some(flag), Some(_)) if *flag != 0 => f(Message::Omitted("the message is compressed")),
            _ => f(Message::Missing),
        }
    }
}

/// The length of the message whose prefix `bytes` starts with.
fn message_len(bytes: &[u8]) -> Option<usize> {
    let len: [u8; 4] = bytes.get(1..PREFIX)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(len)).ok()
}

/// A body with this hook copies its first message as it is read.
impl Hook for Copied {
    fn poll_frame(&mut self, inner: Pin<&mut Body>, cx: &mut Context<'_>) -> Polled {
        let polled = inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.push(data);
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn the_first_message_is_copied_across_frames_and_no_more() {
        let c = Copied::default();
        let mut all = framed(b"hello world");
        all.extend(framed(b"second"));
        for chunk in all.chunks(3) {
            c.push(chunk);
        }
        c.with(|m| assert_eq!(m, Message::Whole(b"hello world")));
    }

    #[test]
    fn a_partial_message_is_missing_and_a_huge_one_omitted() {
        let c = Copied::default();
        c.push(&framed(b"hello")[..7]);
        c.with(|m| assert_eq!(m, Message::Missing));
        let c = Copied::default();
        let mut prefix = vec![0];
        prefix.extend_from_slice(&(MAX_COPY as u32 + 1).to_be_bytes());
        c.push(&prefix);
        c.push(b"abc");
        c.with(|m| assert!(matches!(m, Message::Omitted(_))));
    }

    #[test]
    fn an_empty_message_is_whole() {
        let c = Copied::default();
        c.push(&framed(b""));
        c.with(|m| assert_eq!(m, Message::Whole(b"")));
    }
}
