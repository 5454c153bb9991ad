//! The manager's side of `[rebootstrap]` (see `crate::agent::rebootstrap`):
//! replacing the roots it validates servers with once the delay has
//! passed, and attesting again when its own SVID is no longer valid under
//! the roots it holds (expired while the agent was away, or signed by a CA
//! the servers have dropped).

use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::{Manager, SessionError};
use crate::config::node_attestors::NodeAttestation;
use crate::node::{attest_with, AttestError, Method};

impl Manager {
    /// Called after a failed session: counts it towards the delay and,
    /// once that has passed, reads the roots from the source and trusts
    /// them; true then. Everything held is then re-issued under the new
    /// roots.
    pub(super) async fn after_failure(&mut self, error: &SessionError) -> bool {
        let untrusted = error.server_untrusted();
        let Some(r) = self.rebootstrap.as_mut() else {
            if untrusted {
                tracing::error!(
                    "the server's certificate does not chain to the saved trust bundle; \
                     configure [rebootstrap] to recover from this without an operator, \
                     or replace the agent's data directory and bootstrap it again"
                );
            }
            return false;
        };
        if !r.failed(untrusted) {
            return false;
        }
        let bundle = match r
            .renew_roots(&self.trust_domain, self.bundle.sequence)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %crate::errors::Chain(&e), "re-bootstrapping trust failed; trying again after the delay");
                return false;
            }
        };
        self.metrics.rebootstrapped();
        self.connector.roots().set(bundle.x509_authorities.clone());
        let mut bundle = bundle;
        if bundle.jwt_authorities.is_empty() {
            // A PEM source has no JWT keys: keep serving the held ones
            // until the server's bundle replaces them.
            bundle.jwt_authorities = std::mem::take(&mut self.bundle.jwt_authorities);
        }
        // Sequence 0: whatever bundle the server sends next replaces it.
        self.bundle = bundle;
        if let Err(e) = self.store.save_bundle(&self.bundle) {
            tracing::warn!(error = %crate::errors::Chain(&e), "could not save the re-bootstrapped bundle");
        }
        let now = self.clock.now_unix();
        for h in self.held.values_mut() {
            h.renew_at = now;
        }
        true
    }

    /// With `[rebootstrap]`: attests again if the agent SVID is not valid
    /// under the roots servers are validated with.
    pub(super) async fn reattest_if_needed(&mut self) -> Result<(), SessionError> {
        if self.rebootstrap.is_none() || self.credential_valid() {
            return Ok(());
        }
        let method = match &self.attestation {
            NodeAttestation::JoinToken(t) => Method::JoinToken(t),
            NodeAttestation::X509Pop(files) => Method::X509Pop(files),
            NodeAttestation::K8sPsat(source) => Method::K8sPsat(source),
            NodeAttestation::None => return Err(SessionError::Reattest(Box::new(
                AttestError::Refused(tonic::Status::failed_precondition(
                    "no attestation method is configured (join_token, [node_attestor.x509pop] or [node_attestor.k8s_psat])",
                )),
            ))),
        };
        tracing::warn!(agent = %self.cred.spiffe_id, "the agent SVID is not valid under the trust bundle; attesting again");
        let (cred, bundle) = attest_with(&self.connector, method)
            .await
            .map_err(|e| SessionError::Reattest(Box::new(e)))?;
        if cred.spiffe_id != self.cred.spiffe_id {
            tracing::warn!(was = %self.cred.spiffe_id, now = %cred.spiffe_id, "attested under another agent ID");
        }
        self.store
            .save_credential(&cred)
            .map_err(SessionError::SaveCredential)?;
        if let Err(e) = self.store.save_bundle(&bundle) {
            tracing::warn!(error = %crate::errors::Chain(&e), "could not save the bundle");
        }
        self.connector.roots().set(bundle.x509_authorities.clone());
        self.cred = cred;
        self.bundle = bundle;
        Ok(())
    }

    /// Whether the agent SVID chains to the roots servers are validated
    /// with and has not expired.
    fn credential_valid(&self) -> bool {
        let Some((leaf, intermediates)) = self.cred.chain.split_first() else {
            return false;
        };
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let now = u64::try_from(self.clock.now_unix()).unwrap_or(0);
        crate::tls::verify_svid(
            &CertificateDer::from(leaf.as_slice()),
            &intermediates,
            &self.connector.roots().get(),
            UnixTime::since_unix_epoch(Duration::from_secs(now)),
            webpki::KeyUsage::client_auth(),
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;

    #[test]
    fn the_credential_is_valid_only_under_its_roots_and_before_expiry() {
        let f = fixture();
        assert!(f.manager.credential_valid());
        f.manager
            .connector
            .roots()
            .set(vec![new_ca().cert_der().to_vec()]);
        assert!(!f.manager.credential_valid(), "another CA's roots");
        f.manager
            .connector
            .roots()
            .set(vec![f.ca.cert_der().to_vec()]);
        f.clock.set(T0 + 3_601);
        assert!(!f.manager.credential_valid(), "expired");
    }
}
