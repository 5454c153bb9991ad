//! x509pop re-attestation in a running agent (SPIRE's re-attestable node
//! attestors): the proof of possession can be made again, so instead of
//! renewing its SVID with the SVID itself, an x509pop agent proves again
//! that it holds its machine key, with the certificate as it is on disk
//! now. So the server re-checks the machine certificate (expired, another
//! CA, banned) at every renewal, and the agent's selectors follow a renewed
//! certificate. It also attests at once when the certificate file changes.
//!
//! A re-attestation that fails when the SVID is due falls back to renewal
//! with the SVID (a machine key file being replaced, a server that briefly
//! refuses), logged as a warning; the next renewal tries again. An agent
//! the server refuses (evicted) or whose SVID expired while the server was
//! unreachable attests again too (SPIRE's re-attestable agents do the
//! same); a banned one stays refused.
//!
//! With `agent_path_template` naming agents by something a renewed
//! certificate changes (the default fingerprint), the agent gets a new ID:
//! entries parented to the old one no longer reach it, which node aliases
//! (by CN or CA fingerprint) avoid.

use tonic::transport::Channel;

use super::{Manager, SessionError};
use crate::errors::Chain;
use crate::node::x509pop::MachineFiles;
use crate::node::{attest_with, Method};
use crate::proto::node::node_client::NodeClient as Grpc;

/// The machine identity of an x509pop agent, and which certificate it last
/// proved possession for.
pub(super) struct MachineIdentity {
    files: MachineFiles,
    /// SHA-1 fingerprint of the leaf last attested with (or seen at start).
    proven: Option<String>,
}

impl MachineIdentity {
    fn new(files: MachineFiles) -> Self {
        // Read now: the certificate the agent just attested with, or (on a
        // saved SVID) the one it runs with; unreadable waits for the next look.
        let proven = files.leaf_fingerprint().ok();
        MachineIdentity { files, proven }
    }
}

impl Manager {
    /// The same manager, re-attesting with x509pop from `files`.
    pub fn with_x509pop(mut self, files: MachineFiles) -> Self {
        self.machine = Some(MachineIdentity::new(files));
        self
    }

    /// How often the certificate file is looked at, if this is an x509pop agent.
    pub(super) fn machine_check_interval(&self) -> Option<std::time::Duration> {
        self.machine.as_ref().map(|m| m.files.check_interval)
    }

    /// Whether the certificate on disk is another than the one last
    /// proven (a file that cannot be read now is no change).
    pub(super) fn machine_cert_renewed(&self) -> bool {
        let Some(m) = &self.machine else {
            return false;
        };
        match m.files.leaf_fingerprint() {
            Ok(now) => m.proven.as_deref() != Some(now.as_str()),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot read the machine certificate");
                false
            }
        }
    }

    /// Attests again with the machine certificate and key as they are on
    /// disk now; on success the new SVID (and maybe a new agent ID) is
    /// saved and becomes the agent's credential. `Ok(false)` for an agent
    /// that does not attest with x509pop.
    pub(super) async fn reattest(&mut self, why: &str) -> Result<bool, SessionError> {
        let Some(m) = &self.machine else {
            return Ok(false);
        };
        let files = m.files.clone();
        let leaf = files.leaf_fingerprint().ok();
        let (cred, _bundle) = attest_with(&self.connector, Method::X509Pop(&files))
            .await
            .map_err(|e| SessionError::Reattest(Box::new(e)))?;
        if cred.spiffe_id != self.cred.spiffe_id {
            tracing::warn!(
                old = %self.cred.spiffe_id,
                new = %cred.spiffe_id,
                "re-attestation gave this node a new agent ID (agent_path_template names agents by something the machine certificate changed); entries parented to the old ID no longer reach it"
            );
        }
        self.store
            .save_credential(&cred)
            .map_err(SessionError::SaveCredential)?;
        tracing::info!(agent = %cred.spiffe_id, not_after = cred.not_after, "re-attested with x509pop ({why})");
        self.cred = cred;
        if let Some(m) = &mut self.machine {
            m.proven = leaf;
        }
        Ok(true)
    }

    /// [`Manager::reattest`], a failure logged: whether the agent now
    /// holds a new credential.
    pub(super) async fn reattest_or_log(&mut self, why: &str) -> bool {
        match self.reattest(why).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "x509pop re-attestation ({why}) failed");
                false
            }
        }
    }

    /// The agent SVID is due: an x509pop agent re-attests, falling back to
    /// renewal with its SVID if that fails; any other agent renews.
    pub(super) async fn renew_or_reattest(
        &mut self,
        client: &mut Grpc<Channel>,
    ) -> Result<(), SessionError> {
        match self.reattest("the agent SVID is due").await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %Chain(&e),
                "x509pop re-attestation failed; renewing the agent SVID with the SVID instead"
            ),
        }
        self.renew_agent(client).await
    }
}
