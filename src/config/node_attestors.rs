//! Node attestor tables: `[node_attestors.x509pop]` in server.toml (which
//! machine PKI the server trusts, and how agents are named) and
//! `[node_attestor.x509pop]` in agent.toml (where the machine identity is).
//! The k8s_psat tables are in [`super::k8s_psat`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::k8s_psat::{agent_k8s_psat, RawAgentPsat, RawServerPsat};
use super::ConfigError;
use crate::node::k8s_psat::PsatSource;
use crate::node::x509pop::{MachineFiles, DEFAULT_CHECK_INTERVAL};
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
    ca_bundle_path: Option<PathBuf>,
    ca_bundle_paths: Option<Vec<PathBuf>>,
    agent_path_template: Option<String>,
}

/// The server's x509pop attestor, as configured.
#[derive(Debug, Clone)]
pub struct X509PopServerSettings {
    /// PEM files of roots of the machines' PKIs (read at start): the one
    /// `ca_bundle_path`, or every file of `ca_bundle_paths` (SPIRE's two
    /// keys; several PKIs, or a CA being replaced, each in its own file).
    pub ca_bundle_paths: Vec<PathBuf>,
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
    let ca_bundle_paths = match (raw.ca_bundle_path, raw.ca_bundle_paths) {
        (Some(_), Some(_)) => {
            return Err(c.invalid(
                "node_attestors.x509pop.ca_bundle_paths",
                "cannot be set together with ca_bundle_path; list every file in ca_bundle_paths",
            ))
        }
        (Some(one), None) => {
            c.non_empty_path("node_attestors.x509pop.ca_bundle_path", &one)?;
            vec![one]
        }
        (None, Some(paths)) if paths.is_empty() => {
            return Err(c.invalid(
                "node_attestors.x509pop.ca_bundle_paths",
                "must list at least one file",
            ))
        }
        (None, Some(paths)) => {
            for p in &paths {
                c.non_empty_path("node_attestors.x509pop.ca_bundle_paths", p)?;
            }
            paths
        }
        (None, None) => return Err(c.invalid(
            "node_attestors.x509pop.ca_bundle_path",
            "is required (or ca_bundle_paths, a list of files): the PEM roots of the machines' PKI",
        )),
    };
    let agent_path_template = match raw.agent_path_template {
        Some(t) => PathTemplate::parse(&t, td)
            .map_err(|e| c.invalid("node_attestors.x509pop.agent_path_template", e))?,
        None => PathTemplate::default(),
    };
    Ok(Some(X509PopServerSettings {
        ca_bundle_paths,
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
    certificate_check_interval: Option<String>,
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
            let check_interval = match &x.certificate_check_interval {
                Some(v) => Duration::from_secs(
                    c.duration("node_attestor.x509pop.certificate_check_interval", v, 1)?
                        .unsigned_abs(),
                ),
                None => DEFAULT_CHECK_INTERVAL,
            };
            Ok(NodeAttestation::X509Pop(MachineFiles {
                certificate_path: x.certificate_path,
                private_key_path: x.private_key_path,
                intermediates_path: x.intermediates_path,
                check_interval,
            }))
        }
        (None, None) => Ok(NodeAttestation::None),
    }
}
