//! HTTP/2 spoken by hand on a Unix socket, for attacks no well-behaved
//! client library would send: frames and HPACK written byte by byte, and
//! the memory of the process under attack read from /proc.

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const REFUSED_STREAM: u32 = 0x7;

/// One frame: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix, `first` holding the pattern bits.
pub fn hpack_int(first: u8, n: u32, mut value: usize) -> Vec<u8> {
    let max = (1usize << n) - 1;
    if value < max {
        return vec![first | value as u8];
    }
    let mut out = vec![first | max as u8];
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
    out
}

/// An HPACK string literal, raw octets (no Huffman).
pub fn hpack_str(s: &[u8]) -> Vec<u8> {
    let mut out = hpack_int(0, 7, s.len());
    out.extend_from_slice(s);
    out
}

/// "Literal header field with incremental indexing, new name": the entry
/// lands in the dynamic table at index 62.
pub fn literal_indexed(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    out.extend(hpack_str(name));
    out.extend(hpack_str(value));
    out
}

/// "Literal header field without indexing, new name".
pub fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(hpack_str(name));
    out.extend(hpack_str(value));
    out
}

/// "Indexed header field" for `index`.
pub fn indexed(index: usize) -> Vec<u8> {
    hpack_int(0x80, 7, index)
}

/// The header block of a Workload API call to `method` (literals only,
/// so blocks never depend on each other).
pub fn grpc_request_block(method: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(indexed(3)); // :method POST
    b.extend(indexed(6)); // :scheme http
    b.extend(literal(
        b":path",
        format!("/SpiffeWorkloadAPI/{method}").as_bytes(),
    ));
    b.extend(literal(b":authority", b"localhost"));
    b.extend(literal(b"content-type", b"application/grpc"));
    b.extend(literal(b"te", b"trailers"));
    b.extend(literal(b"workload.spiffe.io", b"true"));
    b
}

/// A connection that has sent the preface and an empty SETTINGS frame.
pub fn connect(socket: &Path) -> UnixStream {
    let (s, sent) = connect_unchecked(socket);
    sent.expect("send the HTTP/2 preface and SETTINGS");
    s
}

/// Like [`connect`], but the preface may fail to go out: a connection over
/// a cap can be accepted and closed by the agent before this side writes,
/// and then the write fails (EPIPE, ECONNRESET). The caller sees such a
/// connection as refused when it reads nothing from it.
pub fn connect_unchecked(socket: &Path) -> (UnixStream, std::io::Result<()>) {
    let mut s = UnixStream::connect(socket).expect("connect to the Workload API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let sent = s
        .write_all(PREFACE)
        .and_then(|()| s.write_all(&frame(SETTINGS, 0, 0, &[])));
    (s, sent)
}

/// A frame as read: (type, flags, stream, payload).
pub type Frame = (u8, u8, u32, Vec<u8>);

/// The next frame, or None at end of stream (or reset, or timeout).
pub fn read_frame(s: &mut UnixStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// The value of `id` in a SETTINGS payload.
pub fn setting(payload: &[u8], id: u16) -> Option<u32> {
    payload.chunks_exact(6).find_map(|c| {
        (u16::from_be_bytes([c[0], c[1]]) == id)
            .then(|| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    })
}

/// Whether the peer has closed `s`: reads (discarding frames) until end of
/// stream or an error. False if it is still open after `within`.
pub fn closed_by_peer(s: &mut UnixStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

pub use crate::harness::procfs::{hwm_mib, rss_mib};
