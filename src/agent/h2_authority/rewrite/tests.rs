//! The shim's client-to-server rewriting, on byte buffers.

use super::*;

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

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
    rewrite_client_frames(&input[..], &mut out, &ConnLimits::default())
        .await
        .unwrap();
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
                                                             // Frames no larger than the protocol's default maximum.
    let (a, b) = block.split_at(10);
    let mut parts = vec![a];
    parts.extend(b.chunks(MAX_FRAME));
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        let kind = if i == 0 {
            FRAME_HEADERS
        } else {
            FRAME_CONTINUATION
        };
        let flags = if i == last {
            FLAG_END_HEADERS
        } else if i == 0 {
            FLAG_END_STREAM
        } else {
            0
        };
        input.extend_from_slice(&frame(kind, flags, 1, part));
    }
    // A header list this large needs a limit above the default.
    let limits = ConnLimits {
        max_header_list_size: 64 * 1024,
        ..ConnLimits::default()
    };
    let mut out = Vec::new();
    rewrite_client_frames(&input[..], &mut out, &limits)
        .await
        .unwrap();
    assert_eq!(&out[..24], PREFACE);
    assert_eq!(&out[24..33], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // Reassemble the rewritten block.
    let mut rest = &out[33..];
    let mut rebuilt = Vec::new();
    let mut frames = 0;
    while !rest.is_empty() {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
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

/// The shim's verdict on `input` under the default limits.
async fn run(input: &[u8]) -> Result<(), ShimError> {
    rewrite_client_frames(input, &mut tokio::io::sink(), &ConnLimits::default()).await
}

fn preface_and_settings() -> Vec<u8> {
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&frame(0x4, 0, 0, &[]));
    input
}

#[tokio::test]
async fn a_header_list_bomb_is_refused() {
    // A 4000-byte entry, then 16 Ki references to it: 64 MiB decoded.
    let mut block = vec![0x40, 1, b'x'];
    block.extend(loona_hpack::encoder::encode_integer(4000, 7));
    block.extend(std::iter::repeat_n(b'v', 4000));
    let mut input = preface_and_settings();
    input.extend_from_slice(&frame(FRAME_HEADERS, 0, 1, &block));
    let refs = vec![0x80 | 62; 16 * 1024];
    let (a, b) = refs.split_at(MAX_FRAME - 100);
    input.extend_from_slice(&frame(FRAME_CONTINUATION, 0, 1, a));
    input.extend_from_slice(&frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, b));
    let err = run(&input).await.unwrap_err();
    assert!(
        matches!(err, ShimError::Block(BlockError::ListTooLarge { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_header_block_never_finished_is_bounded() {
    // CONTINUATION after CONTINUATION without END_HEADERS.
    let mut input = preface_and_settings();
    input.extend_from_slice(&frame(FRAME_HEADERS, 0, 1, &[0x82]));
    let filler = vec![0x82; MAX_FRAME];
    for _ in 0..64 {
        input.extend_from_slice(&frame(FRAME_CONTINUATION, 0, 1, &filler));
    }
    let err = run(&input).await.unwrap_err();
    assert!(
        matches!(err, ShimError::PendingTooLarge { max: 32768 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_new_header_block_while_one_is_pending_is_a_protocol_error() {
    for (kind, stream) in [(FRAME_HEADERS, 1), (FRAME_HEADERS, 3), (0x0, 1), (0x8, 0)] {
        let mut input = preface_and_settings();
        input.extend_from_slice(&frame(FRAME_HEADERS, 0, 1, &[0x82]));
        input.extend_from_slice(&frame(kind, 0, stream, &[0x82]));
        let err = run(&input).await.unwrap_err();
        assert!(matches!(err, ShimError::Protocol(_)), "{kind}: {err}");
    }
    // CONTINUATION on another stream.
    let mut input = preface_and_settings();
    input.extend_from_slice(&frame(FRAME_HEADERS, 0, 1, &[0x82]));
    input.extend_from_slice(&frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &[0x82]));
    assert!(matches!(run(&input).await, Err(ShimError::Protocol(_))));
}

#[tokio::test]
async fn frames_larger_than_the_default_maximum_are_refused() {
    let mut input = preface_and_settings();
    input.extend_from_slice(&frame(0x0, 0, 1, &vec![0; MAX_FRAME + 1]));
    assert!(matches!(run(&input).await, Err(ShimError::Protocol(_))));
}
