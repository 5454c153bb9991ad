//! The client-to-server half of the shim: HTTP/2 frames copied through,
//! header blocks reassembled, decoded (HPACK), a malformed `:authority`
//! replaced, and re-encoded as literals split back into frames.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer accepts frames of this size (the protocol minimum).
const MAX_FRAME: usize = 16_384;
/// Largest header block we reassemble; gRPC metadata is far smaller.
const MAX_BLOCK: usize = 256 * 1024;

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Copies `from` to `to`, rewriting header blocks when the first one
/// carries a malformed `:authority` (see the module docs of the parent).
pub(super) async fn rewrite_client_frames<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    to.write_all(&preface).await?;
    if preface != PREFACE {
        // Not HTTP/2 prior knowledge: let the server reject it as it sees fit.
        tokio::io::copy(&mut from, &mut to).await?;
        return Ok(());
    }
    let mut decoder = loona_hpack::Decoder::new();
    // The raw frames of the first header block, kept until we know whether
    // this client needs rewriting at all (None once decided).
    let mut first_block: Option<Vec<u8>> = Some(Vec::new());
    // The header block being reassembled: (stream id, flags, priority bytes, block).
    let mut pending: Option<(u32, u8, Vec<u8>, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return to.shutdown().await,
            Err(e) => return Err(e),
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let kind = head[3];
        let flags = head[4];
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_BLOCK {
            return Err(bad("HTTP/2 frame too large"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        if let Some(raw) = first_block.as_mut() {
            if kind == FRAME_HEADERS || kind == FRAME_CONTINUATION {
                raw.extend_from_slice(&head);
                raw.extend_from_slice(&payload);
            }
        }
        match kind {
            FRAME_HEADERS => {
                let mut body: &[u8] = &payload;
                let mut pad = 0usize;
                if flags & FLAG_PADDED != 0 {
                    let (&p, rest) = body
                        .split_first()
                        .ok_or_else(|| bad("padded HEADERS without pad length"))?;
                    pad = usize::from(p);
                    body = rest;
                }
                let mut priority = Vec::new();
                if flags & FLAG_PRIORITY != 0 {
                    if body.len() < 5 {
                        return Err(bad("HEADERS priority truncated"));
                    }
                    priority = body[..5].to_vec();
                    body = &body[5..];
                }
                if pad > body.len() {
                    return Err(bad("HEADERS padding longer than the frame"));
                }
                let block = body[..body.len() - pad].to_vec();
                pending = Some((stream, flags, priority, block));
            }
            FRAME_CONTINUATION => match pending.as_mut() {
                Some((id, _, _, block)) if *id == stream => {
                    if block.len() + payload.len() > MAX_BLOCK {
                        return Err(bad("header block too large"));
                    }
                    block.extend_from_slice(&payload);
                    if flags & FLAG_END_HEADERS != 0 {
                        // Fall through to emit below with END_HEADERS semantics.
                    }
                }
                _ => return Err(bad("CONTINUATION without HEADERS")),
            },
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                continue;
            }
        }
        if flags & FLAG_END_HEADERS == 0 {
            continue;
        }
        let Some((id, first_flags, priority, block)) = pending.take() else {
            continue;
        };
        let headers = decoder
            .decode(&block)
            .map_err(|e| bad(&format!("HPACK: {e}")))?;
        if let Some(raw) = first_block.take() {
            let authority_ok = headers
                .iter()
                .all(|(name, value)| name != b":authority" || valid_authority(value));
            if authority_ok {
                // A well-behaved client (tonic, go, Java over TCP...): send
                // its bytes on untouched and get out of the way for good.
                to.write_all(&raw).await?;
                tokio::io::copy(&mut from, &mut to).await?;
                return to.shutdown().await;
            }
            // From here on every header block is re-encoded, so the server's
            // HPACK state never depends on entries this client indexed.
            tracing::debug!("workload client sends a malformed :authority; rewriting its headers");
        }
        let encoded = encode_literals(&headers);
        emit_block(
            &mut to,
            id,
            first_flags & FLAG_END_STREAM,
            &priority,
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
mod tests {
    use super::*;

    #[test]
    fn replaces_only_a_malformed_authority() {
        let headers = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":authority".to_vec(), b"tmp%2Fagent%2Fapi.sock".to_vec()),
            (b"workload.spiffe.io".to_vec(), b"true".to_vec()),
        ];
        let encoded = encode_literals(&headers);
        let decoded = loona_hpack::Decoder::new().decode(&encoded).unwrap();
        assert_eq!(decoded[1], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(decoded[0], headers[0]);
        assert_eq!(decoded[2], headers[2]);
        let ok = vec![(b":authority".to_vec(), b"localhost:8080".to_vec())];
        let decoded = loona_hpack::Decoder::new()
            .decode(&encode_literals(&ok))
            .unwrap();
        assert_eq!(decoded, ok);
    }

    #[tokio::test]
    async fn a_client_with_a_valid_authority_passes_through_byte_for_byte() {
        let mut enc = loona_hpack::Encoder::new();
        let block = enc.encode(vec![
            (&b":authority"[..], &b"localhost"[..]),
            (&b"x"[..], &b"y"[..]),
        ]);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let len = block.len();
        input.extend_from_slice(&[0, 0, len as u8, FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1]);
        input.extend_from_slice(&block);
        // Anything after the first block is copied verbatim, even garbage.
        input.extend_from_slice(b"\xff\xfe not a frame");
        let mut out = Vec::new();
        rewrite_client_frames(&input[..], &mut out).await.unwrap();
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn frames_pass_and_blocks_are_rewritten_and_split() {
        // A client preface, a SETTINGS frame, and a HEADERS block large
        // enough to need CONTINUATION frames after re-encoding.
        let mut enc = loona_hpack::Encoder::new();
        let big = vec![b'x'; 40_000];
        let block = enc.encode(vec![
            (&b":authority"[..], &b"a%2Fb"[..]),
            (&b"x-big"[..], &big[..]),
        ]);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
        let (a, b) = block.split_at(10);
        for (i, part) in [a, b].iter().enumerate() {
            let kind = if i == 0 {
                FRAME_HEADERS
            } else {
                FRAME_CONTINUATION
            };
            let flags = if i == 1 {
                FLAG_END_HEADERS
            } else {
                FLAG_END_STREAM
            };
            let len = part.len();
            input.extend_from_slice(&[
                (len >> 16) as u8,
                (len >> 8) as u8,
                len as u8,
                kind,
                flags,
                0,
                0,
                0,
                1,
            ]);
            input.extend_from_slice(part);
        }
        let mut out = Vec::new();
        rewrite_client_frames(&input[..], &mut out).await.unwrap();
        assert_eq!(&out[..24], PREFACE);
        assert_eq!(&out[24..33], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        // Reassemble the rewritten block.
        let mut rest = &out[33..];
        let mut rebuilt = Vec::new();
        let mut frames = 0;
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            assert!(len <= MAX_FRAME);
            if frames == 0 {
                assert_eq!(rest[3], FRAME_HEADERS);
                assert_eq!(rest[4] & FLAG_END_STREAM, FLAG_END_STREAM);
            } else {
                assert_eq!(rest[3], FRAME_CONTINUATION);
            }
            rebuilt.extend_from_slice(&rest[9..9 + len]);
            frames += 1;
            rest = &rest[9 + len..];
        }
        assert!(frames >= 3);
        let decoded = loona_hpack::Decoder::new().decode(&rebuilt).unwrap();
        assert_eq!(decoded[0].1, b"localhost");
        assert_eq!(decoded[1].1, big);
    }
}
