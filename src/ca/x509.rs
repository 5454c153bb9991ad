//! An X.509 signing authority: one CA certificate and its key, able to sign
//! workload X509-SVIDs and subordinate CA certificates.
//!
//! The authority never decides *who* a certificate is for: the caller passes
//! the SPIFFE ID from a registration entry. It only enforces what must hold
//! for any certificate it signs: the ID is a leaf ID of its own trust domain,
//! the lifetime is positive and never outlives the CA itself.
//!
//! The pieces: `ca_cert` makes and loads authorities and signs
//! intermediates, `svid` signs workload leaves, `inspect` reads any DER
//! certificate or chain, and `signers` adapts our keys to rcgen.

use rcgen::{CertificateParams, Issuer};

use super::public_key::PublicKeyError;
use super::template::TemplateError;
use crate::spiffe::{SpiffeId, TrustDomain};

mod ca_cert;
mod inspect;
mod leaf_der;
#[cfg(test)]
mod leaf_der_tests;
mod signers;
mod svid;

pub use inspect::{cert_facts, split_der_certs, CertFacts};
pub use svid::SvidRequest;

use signers::{CertifiedKey, SharedKey};

/// Why an authority could not be built or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    /// The SPIFFE ID belongs to another trust domain.
    #[error("{id} is not in trust domain {trust_domain}; this CA signs only its own")]
    WrongTrustDomain {
        /// The requested ID.
        id: SpiffeId,
        /// The CA's trust domain.
        trust_domain: TrustDomain,
    },
    /// A leaf SVID needs a path.
    #[error("{0} has no path; a workload SVID needs one (spiffe://<td>/<path>)")]
    NotALeafId(SpiffeId),
    /// A TTL of zero or a negative TTL.
    #[error("ttl must be at least 1 second, got {0}")]
    BadTtl(i64),
    /// The CA is past its NotAfter.
    #[error("the CA expired at {not_after} (unix); it cannot sign at {now}")]
    CaExpired {
        /// The CA's NotAfter.
        not_after: i64,
        /// The time of the request.
        now: i64,
    },
    /// The public key to certify is not one we can put in a certificate.
    #[error("unsupported public key: {0}")]
    BadPublicKey(#[source] PublicKeyError),
    /// A certificate, or one of its extensions, is not valid DER.
    #[error("invalid certificate: cannot read its {part}: {source}")]
    BadCertificate {
        /// The part that failed to decode (the whole certificate, or an extension).
        part: &'static str,
        /// The DER decoder's complaint.
        source: der::Error,
    },
    /// A certificate offered as a CA whose basic constraints say it is not one.
    #[error("invalid CA certificate: basic constraints cA is not true")]
    NotACa,
    /// rcgen cannot take the CA certificate as an issuer.
    #[error("invalid CA certificate: cannot use it as an issuer: {0}")]
    BadIssuer(#[source] rcgen::Error),
    /// The private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    KeyMismatch,
    /// Building the certificate failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// rcgen refused to sign.
    #[error("signing the {what} failed: {source}")]
    Sign {
        /// Which certificate was being signed.
        what: &'static str,
        /// rcgen's complaint.
        source: rcgen::Error,
    },
}

/// A certificate this authority signed, with the chain a holder presents.
#[derive(Debug, Clone)]
pub struct SignedCert {
    /// The new certificate, DER.
    pub cert_der: Vec<u8>,
    /// Leaf first, then every intermediate up to (not including) the root.
    pub chain: Vec<Vec<u8>>,
    /// Lowercase hex serial.
    pub serial: String,
    /// NotAfter, unix seconds (capped at the authority's).
    pub not_after: i64,
}

// === impl X509Authority ===

/// One CA certificate and its key.
pub struct X509Authority {
    trust_domain: TrustDomain,
    cert_der: Vec<u8>,
    upstream_chain: Vec<Vec<u8>>,
    facts: CertFacts,
    issuer: Issuer<'static, SharedKey>,
    leaf: leaf_der::LeafTemplate,
}

impl std::fmt::Debug for X509Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Authority")
            .field("trust_domain", &self.trust_domain)
            .field("serial", &self.facts.serial)
            .field("not_after", &self.facts.not_after)
            .finish_non_exhaustive()
    }
}

impl X509Authority {
    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA's NotAfter, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.facts.not_after
    }

    /// The CA's NotBefore, unix seconds.
    pub fn not_before(&self) -> i64 {
        self.facts.not_before
    }

    /// The CA certificate's serial, lowercase hex.
    pub fn serial(&self) -> &str {
        &self.facts.serial
    }

    /// The certificates above this CA up to (excluding) the root: empty for
    /// a self-signed CA.
    pub fn upstream_chain(&self) -> &[Vec<u8>] {
        &self.upstream_chain
    }

    /// The chain a leaf of this CA presents after itself: empty for a
    /// self-signed root (the root travels in the bundle), else this CA and
    /// every intermediate above it.
    fn chain_above_leaf(&self) -> Vec<Vec<u8>> {
        if self.facts.self_issued {
            Vec::new()
        } else {
            let mut v = vec![self.cert_der.clone()];
            v.extend(self.upstream_chain.iter().cloned());
            v
        }
    }

    /// The NotAfter of a certificate requested for `ttl_secs` at `now`:
    /// never past the CA's own.
    fn validity(&self, ttl_secs: i64, now: i64) -> Result<i64, X509Error> {
        if ttl_secs < 1 {
            return Err(X509Error::BadTtl(ttl_secs));
        }
        if now >= self.facts.not_after {
            return Err(X509Error::CaExpired {
                not_after: self.facts.not_after,
                now,
            });
        }
        Ok((now.saturating_add(ttl_secs)).min(self.facts.not_after))
    }

    /// Signs `params` over `public_key` and puts the result in front of the
    /// chain above it: the last step of every certificate this CA issues.
    fn issue(
        &self,
        what: &'static str,
        params: CertificateParams,
        public_key: &CertifiedKey,
        serial: String,
        not_after: i64,
    ) -> Result<SignedCert, X509Error> {
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| X509Error::Sign { what, source })?;
        Ok(self.signed(cert.der().to_vec(), serial, not_after))
    }

    /// A certificate this CA signed, in front of the chain above it.
    fn signed(&self, cert_der: Vec<u8>, serial: String, not_after: i64) -> SignedCert {
        let mut chain = vec![cert_der.clone()];
        chain.extend(self.chain_above_leaf());
        SignedCert {
            cert_der,
            chain,
            serial,
            not_after,
        }
    }
}
