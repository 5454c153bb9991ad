//! An outsider's HTTP/2 client for the node API: TLS without a client
//! certificate (and without checking the server's, as an attacker would),
//! then HTTP/2 frames through the `h2` crate with every step under the
//! test's control (unfinished messages, streams left open). And the
//! resident memory of a process, read from /proc.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use h2::client::SendRequest;
use hyper::body::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Trusts any server certificate: the attacker does not care who answers.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection without a client certificate, ALPN h2. `Err` when the
/// server closes it during the handshake.
pub async fn anonymous_tls(
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("herald").unwrap(), tcp)
        .await
}

/// An anonymous HTTP/2 connection (its driver runs in a task of its own).
pub async fn anonymous_h2(addr: SocketAddr) -> Result<SendRequest<Bytes>, String> {
    let tls = anonymous_tls(addr).await.map_err(|e| e.to_string())?;
    let (client, conn) = h2::client::Builder::new()
        // Take whatever the server lets through; our own receive side
        // is irrelevant.
        .initial_window_size(1 << 20)
        .handshake(tls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A gRPC call's request head for `method` of the node API.
pub fn grpc_head(method: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("https://herald/herald.node.v1.Node/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Starts an Attest call whose message claims `claimed` bytes and sends up
/// to `send` of them in 16 KiB frames, as fast as flow control allows,
/// never finishing; stops when the server grants no more window within
/// `stall`. Returns the body bytes the server accepted and the stream
/// (kept open by the caller).
pub async fn unfinished_attest(
    client: &mut SendRequest<Bytes>,
    claimed: u32,
    send: usize,
    stall: Duration,
) -> (usize, Option<h2::SendStream<Bytes>>) {
    let ready = tokio::time::timeout(stall, client.clone().ready()).await;
    let Ok(Ok(mut ready)) = ready else {
        return (0, None);
    };
    let Ok((_response, mut stream)) = ready.send_request(grpc_head("Attest"), false) else {
        return (0, None);
    };
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&claimed.to_be_bytes());
    if stream.send_data(Bytes::from(prefix), false).is_err() {
        return (0, None);
    }
    let chunk = Bytes::from(vec![0x41u8; 16 * 1024]);
    let mut sent = 0;
    while sent < send {
        stream.reserve_capacity(chunk.len());
        let granted = tokio::time::timeout(
            stall,
            futures::future::poll_fn(|cx| stream.poll_capacity(cx)),
        )
        .await;
        match granted {
            Ok(Some(Ok(n))) if n > 0 => {
                let n = n.min(chunk.len());
                if stream.send_data(chunk.slice(..n), false).is_err() {
                    break;
                }
                sent += n;
            }
            _ => break,
        }
    }
    (sent, Some(stream))
}

pub use crate::harness::procfs::rss_bytes;
