//! The server side of x509pop: is the chain rooted in the configured CA
//! bundle, did the leaf's key sign this challenge and this CSR, and which
//! agent ID and selectors follow.
//!
//! The leaf needs no clientAuth extended key usage (SPIRE does not ask for
//! one): machine certificates of existing PKIs are often server-only. If
//! the leaf carries an EKU extension, though, it must include clientAuth
//! (`required_if_present`), so a certificate restricted to other purposes
//! (code signing, say) cannot attest.

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::challenge::{ChallengeError, ChallengeKey};
use super::selectors::{leaf_facts, selectors, LeafFacts};
use super::signed_message;
use super::template::{PathTemplate, TemplateError, TemplateFacts};
use crate::registration::Selector;
use crate::spiffe::{SpiffeId, TrustDomain};

/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2), DER contents.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// Why an x509pop proof is refused. Every message is safe to send back.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No certificate was sent.
    #[error("x509pop: the certificate chain is empty")]
    NoChain,
    /// The chain does not verify to the configured roots.
    #[error("x509pop: the machine certificate does not chain to the server's ca_bundle_path(s) roots (or is expired, or not allowed for client auth)")]
    Chain(#[source] webpki::Error),
    /// The challenge is bad or stale.
    #[error("x509pop")]
    Challenge(#[from] ChallengeError),
    /// The signature does not verify with the leaf's key.
    #[error("x509pop: the signature does not verify with the machine certificate's key (wrong key, or made for another challenge or CSR)")]
    Signature,
    /// The leaf does not parse.
    #[error("x509pop: the machine certificate does not parse")]
    Leaf(#[source] der::Error),
    /// No agent ID can be made.
    #[error("x509pop")]
    AgentId(#[from] TemplateError),
}

/// A verified proof.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The agent ID from the template.
    pub agent_id: SpiffeId,
    /// The node selectors (see [`super::selectors`]).
    pub selectors: Vec<Selector>,
    /// The facts they were made from.
    pub leaf: LeafFacts,
}

/// The configured x509pop attestor: roots, template and challenge key.
#[derive(Debug)]
pub struct X509PopVerifier {
    roots: Vec<CertificateDer<'static>>,
    template: PathTemplate,
    trust_domain: TrustDomain,
    challenges: ChallengeKey,
}

/// A proof as it comes off the wire.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    /// DER certificates, leaf first.
    pub chain: &'a [Vec<u8>],
    /// The challenge the server issued.
    pub challenge: &'a [u8],
    /// The leaf key's signature over [`signed_message`].
    pub signature: &'a [u8],
    /// The agent's CSR the proof is bound to.
    pub csr: &'a [u8],
}

impl X509PopVerifier {
    /// An attestor trusting `roots` (DER), naming agents with `template`.
    pub fn new(
        roots: Vec<Vec<u8>>,
        template: PathTemplate,
        trust_domain: TrustDomain,
        challenges: ChallengeKey,
    ) -> Self {
        X509PopVerifier {
            roots: roots.into_iter().map(CertificateDer::from).collect(),
            template,
            trust_domain,
            challenges,
        }
    }

    /// Issues a challenge at `now`: the bytes and their expiry.
    pub fn challenge(&self, now: i64) -> Result<(Vec<u8>, i64), ChallengeError> {
        self.challenges.issue(now)
    }

    /// Checks `proof` at `now` (unix seconds).
    pub fn verify(&self, proof: &Proof<'_>, now: i64) -> Result<Verified, VerifyError> {
        self.challenges.check(proof.challenge, now)?;
        let (leaf_der, rest) = proof.chain.split_first().ok_or(VerifyError::NoChain)?;
        let leaf_der = CertificateDer::from(leaf_der.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let anchors: Vec<_> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        let ee = EndEntityCert::try_from(&leaf_der).map_err(VerifyError::Chain)?;
        let time =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0).unsigned_abs()));
        let path = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &intermediates,
                time,
                KeyUsage::required_if_present(CLIENT_AUTH),
                None,
                None,
            )
            .map_err(VerifyError::Chain)?;
        let message = signed_message(proof.challenge, proof.csr);
        let signed = webpki::ALL_VERIFICATION_ALGS
            .iter()
            .any(|alg| ee.verify_signature(*alg, &message, proof.signature).is_ok());
        if !signed {
            return Err(VerifyError::Signature);
        }
        // The CA certificates of the verified path: intermediates, then the
        // root whose key is the anchor's.
        let mut cas: Vec<Vec<u8>> = path
            .intermediate_certificates()
            .map(|c| c.der().to_vec())
            .collect();
        let anchor_spki = path.anchor().subject_public_key_info.as_ref();
        if let Some(root) = self.roots.iter().find(|r| {
            webpki::anchor_from_trusted_cert(r)
                .is_ok_and(|a| a.subject_public_key_info.as_ref() == anchor_spki)
        }) {
            cas.push(root.to_vec());
        }
        let leaf = leaf_facts(leaf_der.as_ref()).map_err(VerifyError::Leaf)?;
        let agent_id = self.template.agent_id(
            &self.trust_domain,
            &TemplateFacts {
                fingerprint: &leaf.fingerprint,
                subject_cn: leaf.subject_cn.as_deref(),
                serial_number: &leaf.serial_number,
            },
        )?;
        Ok(Verified {
            agent_id,
            selectors: selectors(&leaf, &cas),
            leaf,
        })
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
