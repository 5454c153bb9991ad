//! The agent side of k8s_psat: the projected service-account token, read
//! from the agent pod's projected volume on every attestation (the kubelet
//! rotates it, at 80% of its lifetime), and sent with the cluster's name.
//! The token is a credential: it never appears in logs or errors.

use std::path::PathBuf;

use crate::proto::node;

/// `[node_attestor.k8s_psat]` of agent.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsatSource {
    /// The cluster's name in the server's `[node_attestors.k8s_psat.clusters.<name>]`.
    pub cluster: String,
    /// The projected token file.
    pub token_path: PathBuf,
}

/// Why the token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PsatError {
    /// The file could not be read.
    #[error("k8s_psat: reading the service-account token {path} (is the projected token volume mounted?)")]
    Read {
        /// `token_path`.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("k8s_psat: the service-account token {path} is empty")]
    Empty {
        /// `token_path`.
        path: PathBuf,
    },
}

impl PsatSource {
    /// The token as it is now, for the wire.
    pub fn read(&self) -> Result<node::K8sPsatToken, PsatError> {
        let path = &self.token_path;
        let text = std::fs::read_to_string(path).map_err(|source| PsatError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(PsatError::Empty { path: path.clone() });
        }
        Ok(node::K8sPsatToken {
            cluster: self.cluster.clone(),
            token: token.to_string(),
        })
    }
}
