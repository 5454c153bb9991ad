//! Workload X509-SVIDs: the leaf certificates an authority signs for the
//! SPIFFE IDs of registration entries.

use super::leaf_der::Leaf;
use super::{SignedCert, X509Authority, X509Error};
use crate::ca::public_key;
use crate::ca::serial::SerialBlock;
use crate::ca::template;
use crate::spiffe::SpiffeId;

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

impl X509Authority {
    /// Signs an X509-SVID for `req.spiffe_id` over `req.public_key_spki`,
    /// with a serial of its own block.
    pub fn sign_svid(&self, req: &SvidRequest<'_>, now: i64) -> Result<SignedCert, X509Error> {
        self.sign_svid_in(req, now, &mut SerialBlock::new())
    }

    /// Signs an X509-SVID with the next serial of `serials`: the SVIDs of
    /// one batch share blocks, so the issuance log stores them in groups
    /// (see [`crate::ca::serial`]).
    pub fn sign_svid_in(
        &self,
        req: &SvidRequest<'_>,
        now: i64,
        serials: &mut SerialBlock,
    ) -> Result<SignedCert, X509Error> {
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
        let key = public_key::read_spki(req.public_key_spki).map_err(X509Error::BadPublicKey)?;
        let serial = serials.next_serial(now)?;
        let cert_der = self.leaf.sign(&Leaf {
            serial: &serial,
            not_before: now - template::BACKDATE_SECS,
            not_after,
            subject_cn: req.dns_names.first().map(String::as_str),
            key: &key,
            spiffe_id: req.spiffe_id.as_str(),
            dns_names: req.dns_names,
        })?;
        Ok(self.signed(cert_der, template::serial_hex(&serial), not_after))
    }
}
