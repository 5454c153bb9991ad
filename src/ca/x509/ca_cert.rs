//! CA certificates: minting a self-signed root, loading a stored authority,
//! and signing subordinate (intermediate) CAs under one.

use std::sync::Arc;

use rcgen::{Issuer, PublicKeyData as _};

use super::inspect::{facts_of, parse_cert};
use super::leaf_der::LeafTemplate;
use super::{CertifiedKey, SharedKey, SignedCert, X509Authority, X509Error};
use crate::ca::keys::KeyPair;
use crate::ca::template;
use crate::spiffe::TrustDomain;

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
            .map_err(|source| X509Error::Sign {
                what: "self-signed root CA certificate",
                source,
            })?;
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
        let parsed = parse_cert(&cert_der)?;
        let facts = facts_of(&parsed)?;
        if !facts.is_ca {
            return Err(X509Error::NotACa);
        }
        if facts.public_key_spki != key.public_key_spki() {
            return Err(X509Error::KeyMismatch);
        }
        let leaf = LeafTemplate::new(&parsed, &facts, key.clone())?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), SharedKey(key))
            .map_err(X509Error::BadIssuer)?;
        Ok(X509Authority {
            trust_domain: td.clone(),
            cert_der,
            upstream_chain,
            facts,
            issuer,
            leaf,
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
        self.sign_subordinate(td, public_key_spki, ttl_secs, None, now)
    }

    /// Signs a CA certificate for a downstream server, whose
    /// pathLenConstraint says how many CAs may follow it (0: it signs only
    /// leaves), so that a downstream cannot mint further CAs unless allowed.
    pub fn sign_downstream_ca(
        &self,
        td: &TrustDomain,
        public_key_spki: &[u8],
        ttl_secs: i64,
        path_len: u8,
        now: i64,
    ) -> Result<SignedCert, X509Error> {
        self.sign_subordinate(td, public_key_spki, ttl_secs, Some(path_len), now)
    }

    fn sign_subordinate(
        &self,
        td: &TrustDomain,
        public_key_spki: &[u8],
        ttl_secs: i64,
        path_len: Option<u8>,
        now: i64,
    ) -> Result<SignedCert, X509Error> {
        let not_after = self.validity(ttl_secs, now)?;
        let public_key = CertifiedKey::from_spki(public_key_spki)?;
        let (mut params, serial) = template::ca_params(td, public_key.der_bytes(), now, not_after)?;
        if let Some(n) = path_len {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(n));
        }
        params.use_authority_key_identifier_extension = true;
        self.issue(
            "intermediate CA certificate",
            params,
            &public_key,
            serial,
            not_after,
        )
    }
}
