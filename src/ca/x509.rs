//! An X.509 signing authority: one CA certificate and its key, able to sign
//! workload X509-SVIDs and subordinate CA certificates.
//!
//! The authority never decides *who* a certificate is for: the caller passes
//! the SPIFFE ID from a registration entry. It only enforces what must hold
//! for any certificate it signs: the ID is a leaf ID of its own trust domain,
//! the lifetime is positive and never outlives the CA itself.

use std::sync::Arc;

use der::{Decode as _, Encode as _};
use rcgen::{Issuer, PublicKeyData, SigningKey};
use x509_cert::Certificate;

use super::keys::KeyPair;
use super::template::{self, LeafSpec, TemplateError};
use crate::spiffe::{SpiffeId, TrustDomain};

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
    BadPublicKey(String),
    /// A CA certificate that is not usable as one.
    #[error("invalid CA certificate: {0}")]
    BadCaCert(String),
    /// The private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    KeyMismatch,
    /// Building the certificate failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// rcgen refused to sign.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The facts about a certificate that Herald acts on.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// NotBefore, unix seconds.
    pub not_before: i64,
    /// NotAfter, unix seconds.
    pub not_after: i64,
    /// SubjectPublicKeyInfo DER.
    pub public_key_spki: Vec<u8>,
    /// Lowercase hex serial.
    pub serial: String,
    /// Basic constraints cA flag.
    pub is_ca: bool,
    /// Whether issuer equals subject.
    pub self_issued: bool,
    /// The URI SANs (a SPIFFE CA carries `spiffe://<td>`).
    pub uri_sans: Vec<String>,
    /// Subject key identifier, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// Authority key identifier (key id form), if present.
    pub authority_key_id: Option<Vec<u8>>,
}

/// Reads validity, key, serial and CA flag out of a DER certificate.
pub fn cert_facts(der_bytes: &[u8]) -> Result<CertFacts, X509Error> {
    let cert = Certificate::from_der(der_bytes).map_err(|e| X509Error::BadCaCert(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let is_ca = tbs
        .get::<x509_cert::ext::pkix::BasicConstraints>()
        .map_err(|e| X509Error::BadCaCert(e.to_string()))?
        .map(|(_, bc)| bc.ca)
        .unwrap_or(false);
    let uri_sans = tbs
        .get::<x509_cert::ext::pkix::SubjectAltName>()
        .map_err(|e| X509Error::BadCaCert(e.to_string()))?
        .map(|(_, san)| {
            san.0
                .into_iter()
                .filter_map(|n| match n {
                    x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(u) => {
                        Some(u.to_string())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let subject_key_id = tbs
        .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
        .map_err(|e| X509Error::BadCaCert(e.to_string()))?
        .map(|(_, ski)| ski.0.as_bytes().to_vec());
    let authority_key_id = tbs
        .get::<x509_cert::ext::pkix::AuthorityKeyIdentifier>()
        .map_err(|e| X509Error::BadCaCert(e.to_string()))?
        .and_then(|(_, aki)| aki.key_identifier.map(|k| k.as_bytes().to_vec()));
    Ok(CertFacts {
        uri_sans,
        subject_key_id,
        authority_key_id,
        not_before: secs(tbs.validity.not_before),
        not_after: secs(tbs.validity.not_after),
        public_key_spki: tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| X509Error::BadCaCert(e.to_string()))?,
        serial: template::serial_hex(tbs.serial_number.as_bytes()),
        is_ca,
        self_issued: tbs.issuer == tbs.subject,
    })
}

/// Splits concatenated DER certificates (the Workload API's encoding of
/// chains and bundles). Stops at the first element that is not a complete
/// DER SEQUENCE; never panics.
pub fn split_der_certs(mut der: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while der.len() >= 2 && der[0] == 0x30 {
        let (len, header) = match der[1] {
            b if b < 0x80 => (usize::from(b), 2),
            b => {
                let n = usize::from(b & 0x7f);
                if n == 0 || n > 4 || der.len() < 2 + n {
                    break;
                }
                let len = der[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
                (len, 2 + n)
            }
        };
        let Some(total) = header.checked_add(len).filter(|t| *t <= der.len()) else {
            break;
        };
        out.push(der[..total].to_vec());
        der = &der[total..];
    }
    out
}

/// A public key to certify, in the form rcgen signs over. Built straight
/// from the SubjectPublicKeyInfo's OIDs: rcgen's own parser re-encodes
/// every algorithm it knows to compare them, which cost more than the
/// certificate's signature on the issuance path.
struct CertifiedKey {
    alg: &'static rcgen::SignatureAlgorithm,
    bits: Vec<u8>,
}

impl PublicKeyData for CertifiedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

fn certified_key(spki_der: &[u8]) -> Result<CertifiedKey, X509Error> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| X509Error::BadPublicKey(e.to_string()))?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let alg: &'static rcgen::SignatureAlgorithm =
        match (spki.algorithm.oid.to_string().as_str(), curve.as_deref()) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => &rcgen::PKCS_ECDSA_P256_SHA256,
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => &rcgen::PKCS_ECDSA_P384_SHA384,
            (OID_RSA_ENCRYPTION, _) => &rcgen::PKCS_RSA_SHA256,
            (oid, curve) => {
                return Err(X509Error::BadPublicKey(format!(
                    "key algorithm {oid} (curve {}) is not EC P-256, EC P-384 or RSA",
                    curve.unwrap_or("none")
                )))
            }
        };
    Ok(CertifiedKey {
        alg,
        bits: spki.subject_public_key.raw_bytes().to_vec(),
    })
}

/// A key pair shared between the authority and the key manager, usable by rcgen.
struct SharedKey(Arc<KeyPair>);

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.rcgen().der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.rcgen().algorithm()
    }
}

impl SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.rcgen().sign(msg)
    }
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

/// What an X509-SVID is for.
#[derive(Debug, Clone)]
pub struct SvidRequest<'a> {
    /// The ID, from the registration entry (never from the CSR).
    pub spiffe_id: &'a SpiffeId,
    /// The key to certify (from a verified CSR or generated locally).
    pub public_key_spki: &'a [u8],
    /// Requested lifetime; capped at the CA's remaining lifetime.
    pub ttl_secs: i64,
    /// DNS SANs from the entry.
    pub dns_names: &'a [String],
}

/// One CA certificate and its key.
pub struct X509Authority {
    trust_domain: TrustDomain,
    cert_der: Vec<u8>,
    upstream_chain: Vec<Vec<u8>>,
    facts: CertFacts,
    issuer: Issuer<'static, SharedKey>,
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
    /// Mints a self-signed root CA for `td`, valid for `ttl_secs` from `now`.
    pub fn self_signed(
        td: &TrustDomain,
        key: Arc<KeyPair>,
        ttl_secs: i64,
        now: i64,
    ) -> Result<Self, X509Error> {
        if ttl_secs < 1 {
            return Err(X509Error::BadTtl(ttl_secs));
        }
        let (params, _) = template::ca_params(td, key.rcgen().der_bytes(), now, now + ttl_secs)?;
        let signer = SharedKey(key.clone());
        let cert = params
            .self_signed(&signer)
            .map_err(|e| X509Error::Sign(e.to_string()))?;
        Self::from_parts(td, cert.der().to_vec(), Vec::new(), key)
    }

    /// Rebuilds an authority from its stored certificate, the chain above it
    /// (excluding the root; empty for a self-signed CA) and its key.
    pub fn from_parts(
        td: &TrustDomain,
        cert_der: Vec<u8>,
        upstream_chain: Vec<Vec<u8>>,
        key: Arc<KeyPair>,
    ) -> Result<Self, X509Error> {
        let facts = cert_facts(&cert_der)?;
        if !facts.is_ca {
            return Err(X509Error::BadCaCert(
                "basic constraints cA is not true".into(),
            ));
        }
        if facts.public_key_spki != key.public_key_spki() {
            return Err(X509Error::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), SharedKey(key))
            .map_err(|e| X509Error::BadCaCert(e.to_string()))?;
        Ok(X509Authority {
            trust_domain: td.clone(),
            cert_der,
            upstream_chain,
            facts,
            issuer,
        })
    }

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

    /// Signs an X509-SVID for `req.spiffe_id` over `req.public_key_spki`.
    pub fn sign_svid(&self, req: &SvidRequest<'_>, now: i64) -> Result<SignedCert, X509Error> {
        if req.spiffe_id.trust_domain() != &self.trust_domain {
            return Err(X509Error::WrongTrustDomain {
                id: req.spiffe_id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        if req.spiffe_id.is_trust_domain_id() {
            return Err(X509Error::NotALeafId(req.spiffe_id.clone()));
        }
        let not_after = self.validity(req.ttl_secs, now)?;
        let public_key = certified_key(req.public_key_spki)?;
        let rsa_key = public_key.algorithm() == &rcgen::PKCS_RSA_SHA256;
        let (params, serial) = template::leaf_params(&LeafSpec {
            spiffe_id: req.spiffe_id,
            dns_names: req.dns_names,
            rsa_key,
            subject_key_bits: public_key.der_bytes(),
            not_before: now,
            not_after,
        })?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| X509Error::Sign(e.to_string()))?;
        let cert_der = cert.der().to_vec();
        let mut chain = vec![cert_der.clone()];
        chain.extend(self.chain_above_leaf());
        Ok(SignedCert {
            cert_der,
            chain,
            serial,
            not_after,
        })
    }

    /// Signs a subordinate CA certificate for `td` (an intermediate under this
    /// authority, for a disk upstream or a downstream server).
    pub fn sign_ca(
        &self,
        td: &TrustDomain,
        public_key_spki: &[u8],
        ttl_secs: i64,
        now: i64,
    ) -> Result<SignedCert, X509Error> {
        let not_after = self.validity(ttl_secs, now)?;
        let public_key = certified_key(public_key_spki)?;
        let (mut params, serial) = template::ca_params(td, public_key.der_bytes(), now, not_after)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| X509Error::Sign(e.to_string()))?;
        let cert_der = cert.der().to_vec();
        let mut chain = vec![cert_der.clone()];
        chain.extend(self.chain_above_leaf());
        Ok(SignedCert {
            cert_der,
            chain,
            serial,
            not_after,
        })
    }
}
