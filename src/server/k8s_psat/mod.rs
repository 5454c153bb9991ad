//! The server side of k8s_psat (see [`crate::k8s_psat`]): per configured
//! cluster, have Kubernetes vouch for an agent's projected token (the
//! TokenReview API, or the cluster's JWKS offline), check its service
//! account against the allow list, find its node's UID and the labels the
//! operator allows, and name the agent.
//!
//! - [`api`]: HTTPS to the API server (TokenReview, pods, nodes) or to the
//!   JWKS URL;
//! - [`keys`]: the JWKS, cached and reloaded;
//! - [`verify`](mod@verify): the attestation itself.

pub mod api;
pub mod keys;
pub mod verify;

use std::collections::BTreeMap;

pub use verify::{PsatError, Verified};

use self::api::{HttpsClient, SetupError};
use self::keys::{KeyCache, KeySource, LoadError};
use crate::config::k8s_psat::{JwksSource, PsatCluster, PsatServerSettings, Verification};
use crate::spiffe::TrustDomain;

/// How one cluster vouches for tokens.
#[derive(Debug)]
enum Backend {
    /// The API server: TokenReview, pods and nodes.
    Api(HttpsClient),
    /// The cluster's signing keys.
    Jwks(KeyCache),
}

#[derive(Debug)]
struct Cluster {
    settings: PsatCluster,
    backend: Backend,
}

/// Why the attestor could not be set up (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum PsatSetupError {
    /// An HTTPS client could not be made.
    #[error("node_attestors.k8s_psat.clusters.{cluster}")]
    Client {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: SetupError,
    },
    /// `jwks_path` is unusable.
    #[error("node_attestors.k8s_psat.clusters.{cluster}.jwks_path")]
    Jwks {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: LoadError,
    },
}

/// The configured k8s_psat attestor.
#[derive(Debug)]
pub struct PsatAttestor {
    trust_domain: TrustDomain,
    clusters: BTreeMap<String, Cluster>,
}

impl PsatAttestor {
    /// The attestor `settings` describe: CA files and JWKS files are read
    /// now; a JWKS URL is fetched at the first attestation.
    pub fn new(
        settings: &PsatServerSettings,
        trust_domain: TrustDomain,
    ) -> Result<Self, PsatSetupError> {
        let mut clusters = BTreeMap::new();
        for (name, c) in &settings.clusters {
            let client = |source| PsatSetupError::Client {
                cluster: name.clone(),
                source,
            };
            let backend = match &c.verification {
                Verification::TokenReview(api) => Backend::Api(
                    HttpsClient::new(&api.url, Some(&api.ca_path), Some(api.token_path.clone()))
                        .map_err(client)?,
                ),
                Verification::Jwks(JwksSource::File(path)) => {
                    let keys =
                        KeyCache::load_file(path).map_err(|source| PsatSetupError::Jwks {
                            cluster: name.clone(),
                            source,
                        })?;
                    Backend::Jwks(KeyCache::with_keys(KeySource::File(path.clone()), keys))
                }
                Verification::Jwks(JwksSource::Url { url, ca_path }) => {
                    let https = HttpsClient::new(url, ca_path.as_deref(), None).map_err(client)?;
                    let target = match url.query() {
                        Some(q) => format!("?{q}"),
                        None => String::new(),
                    };
                    Backend::Jwks(KeyCache::new(KeySource::Url(https, target)))
                }
            };
            let how = match backend {
                Backend::Api(_) => "the TokenReview API",
                Backend::Jwks(_) => "its JWKS",
            };
            tracing::info!(cluster = %name, "k8s_psat node attestation enabled, verified by {how}");
            clusters.insert(
                name.clone(),
                Cluster {
                    settings: c.clone(),
                    backend,
                },
            );
        }
        Ok(PsatAttestor {
            trust_domain,
            clusters,
        })
    }
}
