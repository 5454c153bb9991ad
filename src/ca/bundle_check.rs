//! Which trust domain a bundle's authorities belong to. A SPIFFE bundle
//! document does not name its trust domain, so a bundle served for the wrong
//! one is caught by the SPIFFE URI SANs of its CA certificates.

use super::x509::cert_facts;
use crate::spiffe::{Bundle, SpiffeId};

/// A bundle's X.509 authority certifies another trust domain than the one
/// the bundle is for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("x509 authority {index} is the CA of {found}, not of {expected}")]
pub struct WrongTrustDomain {
    /// Position in the bundle's `x509_authorities`.
    pub index: usize,
    /// The SPIFFE ID in the authority's URI SAN.
    pub found: String,
    /// The bundle's trust domain.
    pub expected: String,
}

/// Checks that no X.509 authority of `bundle` names another trust domain in
/// a SPIFFE URI SAN (SPIFFE CAs, SPIRE's and ours, carry `spiffe://<td>`).
/// A bundle document does not name its trust domain, so this is how a
/// bundle served for the wrong trust domain is caught. Authorities without
/// a SPIFFE URI SAN (an upstream root, say) are accepted.
pub fn bundle_trust_domain_check(bundle: &Bundle) -> Result<(), WrongTrustDomain> {
    for (index, der) in bundle.x509_authorities.iter().enumerate() {
        // Bundle parsing already decoded each certificate; one that does
        // not yield facts here has no SAN we could compare.
        let Ok(facts) = cert_facts(der) else { continue };
        for uri in &facts.uri_sans {
            if let Ok(id) = SpiffeId::parse(uri) {
                if id.trust_domain() != &bundle.trust_domain {
                    return Err(WrongTrustDomain {
                        index,
                        found: id.to_string(),
                        expected: bundle.trust_domain.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}
