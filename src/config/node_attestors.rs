//! Node attestor tables: `[node_attestors.x509pop]` in server.toml (which
//! machine PKI the server trusts, and how agents are named) and
//! `[node_attestor.x509pop]` in agent.toml (where the machine identity is).
//! The k8s_psat tables are in [`super::k8s_psat`].

use std::path::PathBuf;

use serde::Deserialize;

use super::check::Checker;
use super::k8s_psat::{agent_k8s_psat, RawAgentPsat, RawServerPsat};
use super::ConfigError;
use crate::node::k8s_psat::PsatSource;
use crate::node::x509pop::MachineFiles;
use crate::spiffe::TrustDomain;
use crate::x509pop::PathTemplate;

/// `[node_attestors]` in server.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerAttestors {
    x509pop: Option<RawServerX509Pop>,
    pub(super) k8s_psat: Option<RawServerPsat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerX509Pop {
    ca_bundle_path: PathBuf,
    agent_path_template: Option<String>,
}

/// The server's x509pop attestor, as configured.
#[derive(Debug, Clone)]
pub struct X509PopServerSettings {
    /// PEM roots of the machines' PKI (read at start).
    pub ca_bundle_path: PathBuf,
    /// How agent IDs are made from the machine certificate.
    pub agent_path_template: PathTemplate,
}

pub(super) fn server_x509pop(
    c: &Checker<'_>,
    raw: RawServerAttestors,
    td: &TrustDomain,
) -> Result<Option<X509PopServerSettings>, ConfigError> {
    let Some(raw) = raw.x509pop else {
        return Ok(None);
    };
    c.non_empty_path("node_attestors.x509pop.ca_bundle_path", &raw.ca_bundle_path)?;
    let agent_path_template = match raw.agent_path_template {
        Some(t) => PathTemplate::parse(&t, td)
            .map_err(|e| c.invalid("node_attestors.x509pop.agent_path_template", e))?,
        None => PathTemplate::default(),
    };
    Ok(Some(X509PopServerSettings {
        ca_bundle_path: raw.ca_bundle_path,
        agent_path_template,
    }))
}

/// `[node_attestor]` in agent.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentAttestor {
    x509pop: Option<RawAgentX509Pop>,
    k8s_psat: Option<RawAgentPsat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentX509Pop {
    certificate_path: PathBuf,
    private_key_path: PathBuf,
    intermediates_path: Option<PathBuf>,
}

/// How the agent attests when it has no usable SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAttestation {
    /// `join_token`: single use.
    JoinToken(String),
    /// `[node_attestor.x509pop]`: the machine certificate and key.
    X509Pop(MachineFiles),
    /// `[node_attestor.k8s_psat]`: the cluster and the projected token.
    K8sPsat(PsatSource),
    /// Nothing configured: the agent runs only on a saved SVID.
    None,
}

pub(super) fn agent_attestation(
    c: &Checker<'_>,
    join_token: Option<String>,
    raw: RawAgentAttestor,
) -> Result<NodeAttestation, ConfigError> {
    if let Some(psat) = raw.k8s_psat {
        if join_token.is_some() || raw.x509pop.is_some() {
            return Err(c.invalid(
                "node_attestor.k8s_psat",
                "cannot be set together with join_token or [node_attestor.x509pop]; configure exactly one attestation method",
            ));
        }
        return agent_k8s_psat(c, psat).map(NodeAttestation::K8sPsat);
    }
    match (join_token, raw.x509pop) {
        (Some(_), Some(_)) => Err(c.invalid(
            "join_token",
            "cannot be set together with [node_attestor.x509pop]; configure exactly one attestation method",
        )),
        (Some(t), None) if t.is_empty() => Err(c.invalid("join_token", "must not be empty")),
        (Some(t), None) => Ok(NodeAttestation::JoinToken(t)),
        (None, Some(x)) => {
            c.non_empty_path("node_attestor.x509pop.certificate_path", &x.certificate_path)?;
            c.non_empty_path("node_attestor.x509pop.private_key_path", &x.private_key_path)?;
            if let Some(p) = &x.intermediates_path {
                c.non_empty_path("node_attestor.x509pop.intermediates_path", p)?;
            }
            Ok(NodeAttestation::X509Pop(MachineFiles {
                certificate_path: x.certificate_path,
                private_key_path: x.private_key_path,
                intermediates_path: x.intermediates_path,
            }))
        }
        (None, None) => Ok(NodeAttestation::None),
    }
}
