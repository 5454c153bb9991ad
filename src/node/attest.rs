//! Attestation: the first contact of a node with its server. The node
//! generates its key, sends a CSR with a single-use join token, an
//! x509pop proof or a Kubernetes projected service-account token over an
//! anonymous TLS connection, and receives its SVID and the trust bundle.

use std::sync::Arc;

use super::connector::{AgentCredential, NodeClientError, ServerConnector};
use super::csr::{make_csr, CsrBuildError};
use super::k8s_psat::{PsatError, PsatSource};
use super::wire::{bundle_from_wire, WireCause, WireError};
use super::x509pop::{MachineError, MachineFiles};
use crate::ca::{KeyError, KeyPair, KeyType};
use crate::errors::{code_words, StatusReason};
use crate::proto::node;
use crate::spiffe::{Bundle, SpiffeId};

/// Why attestation failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The node's key could not be generated.
    #[error("generating the node key")]
    Key(#[source] KeyError),
    /// The CSR could not be built.
    #[error(transparent)]
    Csr(#[from] CsrBuildError),
    /// The machine identity (x509pop) could not be used.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The projected service-account token (k8s_psat) could not be read.
    #[error(transparent)]
    Psat(#[from] PsatError),
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] NodeClientError),
    /// The server refused, or the connection broke during the call. Not a
    /// `#[source]`: the status's own `Display` repeats its message.
    #[error("{}", Refusal(.0))]
    Refused(tonic::Status),
    /// A part of the server's answer is missing or does not parse.
    #[error("the server sent a bad {what}")]
    BadReply {
        /// Which part of the answer.
        what: &'static str,
        /// Why it is bad.
        #[source]
        source: WireCause,
    },
    /// The server's bundle does not parse.
    #[error("the server sent a bad bundle")]
    BadBundle(#[source] WireError),
}

fn bad(what: &'static str, source: impl Into<WireCause>) -> AttestError {
    AttestError::BadReply {
        what,
        source: source.into(),
    }
}

/// How a node proves who it is.
#[derive(Debug, Clone, Copy)]
pub enum Method<'a> {
    /// A single-use join token.
    JoinToken(&'a str),
    /// Possession of a machine key certified by the server's x509pop CA.
    X509Pop(&'a MachineFiles),
    /// A Kubernetes projected service-account token (k8s_psat).
    K8sPsat(&'a PsatSource),
}

/// Attests to the server at `connector` with a join token; returns the node
/// credential and the trust bundle.
pub async fn attest(
    connector: &ServerConnector,
    token: &str,
) -> Result<(AgentCredential, Bundle), AttestError> {
    attest_with(connector, Method::JoinToken(token)).await
}

/// Attests to the server at `connector` by `method`.
pub async fn attest_with(
    connector: &ServerConnector,
    method: Method<'_>,
) -> Result<(AgentCredential, Bundle), AttestError> {
    let key = KeyPair::generate(KeyType::EcP256).map_err(AttestError::Key)?;
    let csr = make_csr(&key)?;
    let mut client = connector.anonymous().await?;
    let request = match method {
        Method::JoinToken(token) => node::AttestRequest {
            join_token: token.to_string(),
            csr,
            x509pop: None,
            k8s_psat: None,
        },
        Method::X509Pop(files) => {
            let challenge = client
                .challenge(node::ChallengeRequest {})
                .await
                .map_err(AttestError::Refused)?
                .into_inner()
                .challenge;
            node::AttestRequest {
                join_token: String::new(),
                x509pop: Some(files.proof(challenge, &csr)?),
                csr,
                k8s_psat: None,
            }
        }
        Method::K8sPsat(source) => node::AttestRequest {
            join_token: String::new(),
            csr,
            x509pop: None,
            k8s_psat: Some(source.read()?),
        },
    };
    let resp = client
        .attest(request)
        .await
        .map_err(AttestError::Refused)?
        .into_inner();
    let spiffe_id = SpiffeId::parse(&resp.spiffe_id).map_err(|e| bad("agent ID", e))?;
    let leaf = resp
        .svid_chain
        .first()
        .ok_or_else(|| bad("agent SVID", WireCause::Missing))?;
    let facts = crate::ca::x509::cert_facts(leaf).map_err(|e| bad("agent SVID", e))?;
    let wire_bundle = resp
        .bundle
        .ok_or_else(|| bad("bundle", WireCause::Missing))?;
    let bundle = bundle_from_wire(wire_bundle).map_err(AttestError::BadBundle)?;
    let how = match method {
        Method::JoinToken(_) => "a join token",
        Method::X509Pop(_) => "x509pop",
        Method::K8sPsat(_) => "k8s_psat",
    };
    tracing::info!(agent = %spiffe_id, "attested with {how}");
    Ok((
        AgentCredential {
            spiffe_id,
            chain: resp.svid_chain,
            key: Arc::new(key),
            not_after: facts.not_after,
        },
        bundle,
    ))
}

/// "refused (permission denied): <message>", "server unavailable:
/// <message>", or the broken connection.
struct Refusal<'a>(&'a tonic::Status);

impl std::fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.0;
        if crate::errors::connection_cause(status).is_some() {
            return write!(f, "{}", StatusReason(status));
        }
        // Unavailable is no refusal: the server could not answer (its own
        // upstream, e.g. the Kubernetes API, was down); the agent retries.
        if status.code() == tonic::Code::Unavailable {
            return write!(f, "server unavailable: {}", status.message());
        }
        let code = code_words(status.code());
        write!(f, "refused ({code}): {}", status.message())
    }
}

#[cfg(test)]
mod tests {
    use super::AttestError;
    use crate::errors::chain;

    #[test]
    fn a_refusal_names_its_code_and_message_once() {
        let e = AttestError::Refused(tonic::Status::permission_denied("join token already used"));
        assert_eq!(
            chain(&e),
            "refused (permission denied): join token already used"
        );
    }

    #[test]
    fn an_unavailable_server_is_not_called_a_refusal() {
        let e = AttestError::Refused(tonic::Status::unavailable("the cluster is down"));
        assert_eq!(chain(&e), "server unavailable: the cluster is down");
    }
}
