//! Federation peers that misbehave, for the security tests: bundle
//! documents no honest peer serves (100,000 keys, tens of thousands of JWT
//! keys, certificates padded to fill the response limit) and answers that
//! drip a body in 1-byte chunks or never end. They are served over HTTPS
//! with [`super::web::serve_with`] and the test Web PKI.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// A bundle document of `keys`.
pub fn bundle(keys: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys, "spiffe_sequence": 1 })).unwrap()
}

/// `n` keys no reader uses (`kty` "oct" is skipped): about the smallest a
/// key can be, so 100,000 fit in the 4 MiB response limit.
pub fn tiny_keys(n: usize) -> Vec<Value> {
    vec![json!({ "use": "jwt-svid", "kty": "oct" }); n]
}

/// `n` P-256 JWT keys `k0`, `k1`, ... Their coordinates come from the
/// index: not points on the curve, but nothing here verifies a token.
pub fn jwt_keys(n: usize) -> Vec<Value> {
    let coordinate = |fill: u8, i: usize| {
        let mut c = [fill; 32];
        c[24..].copy_from_slice(&(i as u64).to_be_bytes());
        URL_SAFE_NO_PAD.encode(c)
    };
    (0..n)
        .map(|i| {
            json!({
                "use": "jwt-svid",
                "kty": "EC",
                "kid": format!("k{i}"),
                "crv": "P-256",
                "x": coordinate(0x11, i),
                "y": coordinate(0x22, i),
            })
        })
        .collect()
}

/// `n` distinct CA certificates (one key), each padded with a private
/// extension of `padding` bytes, as x509-svid keys: large in bytes, few
/// in number. `seed` makes them differ from another call's.
pub fn x509_keys(n: usize, padding: usize, seed: u8) -> Vec<Value> {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&raw[1..33]),
        URL_SAFE_NO_PAD.encode(&raw[33..65]),
    );
    (0..n)
        .map(|i| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.serial_number = Some(rcgen::SerialNumber::from(i as u64 + 1));
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    vec![seed ^ (i % 251) as u8; padding],
                ));
            let cert = params.self_signed(&key).unwrap();
            json!({
                "use": "x509-svid",
                "kty": "EC",
                "crv": "P-256",
                "x": x,
                "y": y,
                "x5c": [STANDARD.encode(cert.der())],
            })
        })
        .collect()
}

/// A `200 OK` whose body follows in chunks.
const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// `body` as 1-byte chunks, `per_write` of them per write (so per TLS
/// record), then the end of the body.
pub async fn drip_chunked<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8], per_write: usize) {
    if w.write_all(CHUNKED_HEAD).await.is_err() {
        return;
    }
    for group in body.chunks(per_write) {
        let mut out = Vec::with_capacity(group.len() * 6);
        for b in group {
            out.extend_from_slice(b"1\r\n");
            out.push(*b);
            out.extend_from_slice(b"\r\n");
        }
        if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.write_all(b"0\r\n\r\n").await;
    let _ = w.shutdown().await;
}

/// A 1-byte chunk every `every`, for as long as the reader stays.
pub async fn trickle_forever<W: AsyncWrite + Unpin>(w: &mut W, every: Duration) {
    if w.write_all(CHUNKED_HEAD).await.is_err() {
        return;
    }
    while w.write_all(b"1\r\n \r\n").await.is_ok() && w.flush().await.is_ok() {
        tokio::time::sleep(every).await;
    }
}

/// 4 KiB chunks of whitespace as fast as the reader takes them, forever.
pub async fn flood_forever<W: AsyncWrite + Unpin>(w: &mut W) {
    if w.write_all(CHUNKED_HEAD).await.is_err() {
        return;
    }
    let mut chunk = b"1000\r\n".to_vec();
    chunk.extend_from_slice(&[b' '; 4096]);
    chunk.extend_from_slice(b"\r\n");
    while w.write_all(&chunk).await.is_ok() {}
}

/// `body` as a complete `200 OK` JSON response.
pub fn ok_json(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
