//! The X509-SVID a node connection's client presented, read once per
//! connection instead of on every request (three decodings per call
//! before: the node API's ID and serial, and the audit record's ID).
//!
//! Keeping it for the connection's life is safe because the client
//! certificate is fixed by the TLS handshake: rustls neither renegotiates
//! nor offers TLS 1.3 post-handshake authentication, so every request on
//! a connection presents the certificate its handshake verified. What can
//! change between two requests (the agent banned, evicted, or renewed to
//! a new SVID) is not kept here: the node API compares the presented
//! serial with the agent's record in the store on every call.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;

use crate::errors::Chain;
use crate::spiffe::SpiffeId;

/// What a node API call needs of its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerSvid {
    /// The SPIFFE ID in its URI SAN.
    pub(crate) id: SpiffeId,
    /// Its serial number, as lowercase hex (as agent records keep it).
    pub(crate) serial: String,
}

/// Why a connection's client certificate names no agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerSvidError {
    /// The client sent no certificate (the node listener lets such
    /// clients in for `Attest` only).
    #[error("this call needs the agent's X509-SVID as TLS client certificate")]
    NoCertificate,
    /// The certificate is not an X509-SVID; the reason, with its causes.
    #[error("{0}")]
    NotAnSvid(String),
}

/// A connection's [`PeerSvid`], read on first use and shared by every
/// request of the connection (each request's connect info holds a clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerSvidMemo(Arc<OnceLock<Result<PeerSvid, PeerSvidError>>>);

impl PeerSvidMemo {
    /// The connection's client SVID; `leaf` gives the client certificate
    /// and is called only by the first request that asks.
    pub(crate) fn get_or_read(
        &self,
        leaf: impl FnOnce() -> Option<CertificateDer<'static>>,
    ) -> Result<&PeerSvid, &PeerSvidError> {
        self.0.get_or_init(|| read(leaf())).as_ref()
    }
}

impl super::NodeConnectInfo {
    /// The client SVID of this request's connection (see the module doc).
    pub(crate) fn client_svid(&self) -> Result<&PeerSvid, &PeerSvidError> {
        self.peer_svid
            .get_or_read(|| self.inner.peer_certs().and_then(|c| c.first().cloned()))
    }
}

fn read(leaf: Option<CertificateDer<'static>>) -> Result<PeerSvid, PeerSvidError> {
    let leaf = leaf.ok_or(PeerSvidError::NoCertificate)?;
    let (id, serial) = crate::tls::spiffe_id_and_serial_of(&leaf)
        .map_err(|e| PeerSvidError::NotAnSvid(Chain(&e).to_string()))?;
    Ok(PeerSvid {
        id,
        serial: crate::ca::template::serial_hex(&serial),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn svid() -> (CertificateDer<'static>, String) {
        use crate::ca::x509::{SvidRequest, X509Authority};
        use crate::ca::{KeyPair, KeyType};
        let td = crate::spiffe::TrustDomain::new("example.org").unwrap();
        let now = crate::clock::now_unix();
        let ca_key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
        let ca = X509Authority::self_signed(&td, ca_key, 3_600, now).unwrap();
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let id = SpiffeId::new(&td, "/agent/a").unwrap();
        let request = SvidRequest {
            spiffe_id: &id,
            public_key_spki: &key.public_key_spki(),
            ttl_secs: 600,
            dns_names: &[],
        };
        let leaf = ca.sign_svid(&request, now).unwrap().chain.remove(0);
        let serial = crate::ca::x509::cert_facts(&leaf).unwrap().serial;
        (CertificateDer::from(leaf), serial)
    }

    /// The ID and serial are the certificate's (the serial as the agent
    /// record keeps it), and the certificate is read once however many
    /// requests ask.
    #[test]
    fn the_first_request_reads_the_certificate_and_later_ones_share_it() {
        let (leaf, serial) = svid();
        let memo = PeerSvidMemo::default();
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let clone = memo.clone();
            let got = clone
                .get_or_read(|| {
                    reads.fetch_add(1, Ordering::SeqCst);
                    Some(leaf.clone())
                })
                .unwrap()
                .clone();
            assert_eq!(got.id.to_string(), "spiffe://example.org/agent/a");
            assert_eq!(got.serial, serial);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_certificate_and_a_certificate_without_an_id_are_refused_with_the_reason() {
        let none = PeerSvidMemo::default();
        assert_eq!(
            none.get_or_read(|| None),
            Err(&PeerSvidError::NoCertificate)
        );
        let garbage = PeerSvidMemo::default();
        let err = garbage
            .get_or_read(|| Some(CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])))
            .unwrap_err();
        assert!(err.to_string().contains("not an X509-SVID"), "{err}");
    }
}
