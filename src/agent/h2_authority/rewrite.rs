//! The client-to-server half of the shim: HTTP/2 frames copied through,
//! header blocks reassembled, decoded (HPACK), a malformed `:authority`
//! replaced, and re-encoded as literals split back into frames.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::block::{BlockDecoder, BlockError};
use super::limits::ConnLimits;

pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE as the server behind the shim leaves it (the
/// protocol default): every peer accepts frames of this size, and a
/// larger frame from the client is an error the server would raise too.
pub(super) const MAX_FRAME: usize = 16_384;

/// Why the shim closed a client connection.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Reading from the client or writing to the server failed.
    #[error("connection I/O")]
    Io(#[from] io::Error),
    /// The client broke the HTTP/2 framing rules.
    #[error("HTTP/2 protocol error: {0}")]
    Protocol(&'static str),
    /// A header block awaiting END_HEADERS grew past the limit.
    #[error("header block awaiting END_HEADERS exceeds {max} bytes")]
    PendingTooLarge {
        /// Twice `workload_api_max_header_list_size`.
        max: usize,
    },
    /// A complete header block could not be decoded within the limits.
    #[error("header block refused")]
    Block(#[from] BlockError),
}

/// A header block being reassembled from HEADERS and CONTINUATION frames.
struct Pending {
    stream: u32,
    /// The HEADERS frame's flags (END_STREAM is carried over).
    flags: u8,
    /// The HEADERS priority fields, re-emitted as they came.
    priority: Vec<u8>,
    /// The HPACK bytes so far.
    block: Vec<u8>,
    /// Bytes received for this block, frame headers and padding included.
    received: usize,
}

/// The HEADERS frame's payload without padding: (priority fields, block fragment).
fn headers_fragment(flags: u8, payload: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ShimError> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&p, rest) = body
            .split_first()
            .ok_or(ShimError::Protocol("padded HEADERS without pad length"))?;
        pad = usize::from(p);
        body = rest;
    }
    let mut priority = Vec::new();
    if flags & FLAG_PRIORITY != 0 {
        if body.len() < 5 {
            return Err(ShimError::Protocol("HEADERS priority truncated"));
        }
        priority = body[..5].to_vec();
        body = &body[5..];
    }
    if pad > body.len() {
        return Err(ShimError::Protocol("HEADERS padding longer than the frame"));
    }
    Ok((priority, body[..body.len() - pad].to_vec()))
}

/// Copies `from` to `to`, rewriting header blocks when the first one
/// carries a malformed `:authority` (see the module docs of the parent).
/// Every header block is bounded by `limits` whether or not it is
/// rewritten: the first one is always decoded here.
pub(super) async fn rewrite_client_frames<R, W>(
    mut from: R,
    to: &mut W,
    limits: &ConnLimits,
) -> Result<(), ShimError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    to.write_all(&preface).await?;
    if preface != PREFACE {
        // Not HTTP/2 prior knowledge: let the server reject it as it sees fit.
        tokio::io::copy(&mut from, to).await?;
        return Ok(());
    }
    let max_pending = limits.max_pending_block();
    let mut decoder = BlockDecoder::new(limits.max_header_list_size);
    // The raw frames of the first header block, kept until we know whether
    // this client needs rewriting at all (None once decided).
    let mut first_block: Option<Vec<u8>> = Some(Vec::new());
    let mut pending: Option<Pending> = None;
    let mut payload = Vec::with_capacity(MAX_FRAME);
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(to.shutdown().await?),
            Err(e) => return Err(e.into()),
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let kind = head[3];
        let flags = head[4];
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(ShimError::Protocol(
                "frame larger than SETTINGS_MAX_FRAME_SIZE",
            ));
        }
        payload.resize(len, 0);
        from.read_exact(&mut payload).await?;
        match (kind, pending.as_mut()) {
            (FRAME_HEADERS, None) => {
                let (priority, block) = headers_fragment(flags, &payload)?;
                if head.len() + len > max_pending {
                    return Err(ShimError::PendingTooLarge { max: max_pending });
                }
                pending = Some(Pending {
                    stream,
                    flags,
                    priority,
                    block,
                    received: head.len() + len,
                });
            }
            (FRAME_CONTINUATION, Some(p)) if p.stream == stream => {
                p.received += head.len() + len;
                if p.received > max_pending {
                    return Err(ShimError::PendingTooLarge { max: max_pending });
                }
                p.block.extend_from_slice(&payload);
            }
            (FRAME_CONTINUATION, _) => {
                return Err(ShimError::Protocol("CONTINUATION without HEADERS"))
            }
            // RFC 9113 §6.10: a header block is contiguous; anything else
            // before its END_HEADERS (a new HEADERS included) is a
            // connection error.
            (_, Some(_)) => {
                return Err(ShimError::Protocol(
                    "frame interleaved with an unfinished header block",
                ))
            }
            (_, None) => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                continue;
            }
        }
        if let Some(raw) = first_block.as_mut() {
            raw.extend_from_slice(&head);
            raw.extend_from_slice(&payload);
        }
        if flags & FLAG_END_HEADERS == 0 {
            continue;
        }
        let Some(p) = pending.take() else {
            continue;
        };
        let headers = decoder.decode(&p.block)?;
        if let Some(raw) = first_block.take() {
            let authority_ok = headers
                .iter()
                .all(|(name, value)| name != b":authority" || valid_authority(value));
            if authority_ok {
                // A well-behaved client (tonic, go, Java over TCP...): send
                // its bytes on untouched and get out of the way for good;
                // the server bounds its later header blocks itself.
                to.write_all(&raw).await?;
                drop(raw);
                drop(payload);
                tokio::io::copy(&mut from, to).await?;
                return Ok(to.shutdown().await?);
            }
            // From here on every header block is re-encoded, so the server's
            // HPACK state never depends on entries this client indexed.
            tracing::debug!("workload client sends a malformed :authority; rewriting its headers");
        }
        let encoded = encode_literals(&headers);
        emit_block(
            to,
            p.stream,
            p.flags & FLAG_END_STREAM,
            &p.priority,
            &encoded,
        )
        .await?;
    }
}

/// Re-encodes headers as "literal without indexing, new name", fixing a
/// malformed `:authority` on the way.
fn encode_literals(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let value: &[u8] = if name == b":authority" && !valid_authority(value) {
            b"localhost"
        } else {
            value
        };
        out.push(0x00);
        for s in [name.as_slice(), value] {
            // H bit 0: raw octets, 7-bit length prefix.
            out.extend(loona_hpack::encoder::encode_integer(s.len(), 7));
            out.extend_from_slice(s);
        }
    }
    out
}

fn valid_authority(v: &[u8]) -> bool {
    !v.is_empty() && http::uri::Authority::try_from(v).is_ok()
}

async fn emit_block<W: AsyncWrite + Unpin>(
    to: &mut W,
    stream: u32,
    end_stream: u8,
    priority: &[u8],
    block: &[u8],
) -> io::Result<()> {
    let first_room = MAX_FRAME - priority.len();
    let (first, rest) = block.split_at(block.len().min(first_room));
    let mut chunks: Vec<&[u8]> = vec![first];
    chunks.extend(rest.chunks(MAX_FRAME));
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let (kind, mut flags, prefix) = if i == 0 {
            let mut f = end_stream;
            if !priority.is_empty() {
                f |= FLAG_PRIORITY;
            }
            (FRAME_HEADERS, f, priority)
        } else {
            (FRAME_CONTINUATION, 0, &[][..])
        };
        if i == last {
            flags |= FLAG_END_HEADERS;
        }
        let len = prefix.len() + chunk.len();
        let mut head = [0u8; 9];
        head[0] = (len >> 16) as u8;
        head[1] = (len >> 8) as u8;
        head[2] = len as u8;
        head[3] = kind;
        head[4] = flags;
        head[5..9].copy_from_slice(&stream.to_be_bytes());
        to.write_all(&head).await?;
        to.write_all(prefix).await?;
        to.write_all(chunk).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
