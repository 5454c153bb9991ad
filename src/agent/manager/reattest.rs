//! x509pop and k8s_psat re-attestation in a running agent (SPIRE's
//! re-attestable node attestors): the proof of possession can be made again, so instead of
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
//!
//! A k8s_psat agent does the same with its projected service-account token
//! as the kubelet last rotated it: the server asks the cluster again at
//! every renewal (a deleted pod, a service account removed from the allow
//! list), and the agent ID (the node's UID) stays.

use tonic::transport::Channel;

use super::{Manager, SessionError};
use crate::config::node_attestors::NodeAttestation;
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
    /// disk now (x509pop) or the token as it is now (k8s_psat); on success
    /// the new SVID (and maybe a new agent ID) is saved and becomes the
    /// agent's credential. `Ok(false)` for an agent that attests otherwise.
    pub(super) async fn reattest(&mut self, why: &str) -> Result<bool, SessionError> {
        let files = self.machine.as_ref().map(|m| m.files.clone());
        let psat = match &self.attestation {
            NodeAttestation::K8sPsat(source) => Some(source.clone()),
            _ => None,
        };
        let (method, how) = match (&files, &psat) {
            (Some(files), _) => (Method::X509Pop(files), "x509pop"),
            (None, Some(source)) => (Method::K8sPsat(source), "k8s_psat"),
            (None, None) => return Ok(false),
        };
        let leaf = files.as_ref().and_then(|f| f.leaf_fingerprint().ok());
        let (cred, _bundle) = attest_with(&self.connector, method)
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
        tracing::info!(agent = %cred.spiffe_id, not_after = cred.not_after, "re-attested with {how} ({why})");
        self.cred = cred;
        if let Some(m) = &mut self.machine {
            m.proven = leaf;
        }
        Ok(true)
    }

    /// `x509pop` or `k8s_psat`, for logs.
    fn reattest_kind(&self) -> &'static str {
        if matches!(self.attestation, NodeAttestation::K8sPsat(_)) {
            "k8s_psat"
        } else {
            "x509pop"
        }
    }

    /// [`Manager::reattest`], a failure logged: whether the agent now
    /// holds a new credential.
    pub(super) async fn reattest_or_log(&mut self, why: &str) -> bool {
        match self.reattest(why).await {
            Ok(done) => done,
            Err(e) => {
                let how = self.reattest_kind();
                tracing::warn!(error = %Chain(&e), "{how} re-attestation ({why}) failed");
                false
            }
        }
    }

    /// The agent SVID is due: an x509pop or k8s_psat agent re-attests,
    /// falling back to renewal with its SVID if that fails; any other
    /// agent renews.
    pub(super) async fn renew_or_reattest(
        &mut self,
        client: &mut Grpc<Channel>,
    ) -> Result<(), SessionError> {
        match self.reattest("the agent SVID is due").await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %Chain(&e),
                "{} re-attestation failed; renewing the agent SVID with the SVID instead",
                self.reattest_kind()
            ),
        }
        self.renew_agent(client).await
    }
}
