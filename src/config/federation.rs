//! The `[federation]` table of the server configuration: the bundle endpoint
//! this server serves, the extra Web PKI roots used to fetch `https_web`
//! endpoints, and relationships declared in the file.
//!
//! Parsed with unknown keys refused, then validated so that every mistake
//! names its key (`federation.bundle_endpoint.address`, or
//! `federation.relationships[1].bundle_endpoint_url`), the way
//! [`super::server`] does for the rest of the file.
//!
//! ```toml
//! [federation]
//! web_roots_path = "/etc/herald/web-roots.pem"   # optional, added to the system roots
//!
//! [federation.bundle_endpoint]
//! address = "0.0.0.0:8443"
//! profile = "https_spiffe"          # or "https_web" (then cert_path and key_path)
//! refresh_hint = "5m"
//!
//! [[federation.relationships]]
//! trust_domain = "partner.org"
//! bundle_endpoint_url = "https://partner.org:8443/"
//! profile = "https_spiffe"
//! endpoint_spiffe_id = "spiffe://partner.org/herald/server"
//! trust_domain_bundle_path = "/etc/herald/partner.org.json"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;
use crate::ca::bundle_check::bundle_trust_domain_check;
use crate::duration::parse_duration_secs;
use crate::spiffe::{Bundle, EndpointUrl, SpiffeId, TrustDomain};
use crate::store::{BundleEndpointProfile, FederationRelationship};

/// The refresh hint the bundle endpoint advertises unless configured: 5
/// minutes, SPIRE's default (SPIFFE.md §5.4).
pub const DEFAULT_REFRESH_HINT_SECS: u64 = 300;

/// A validated `[federation]` table.
#[derive(Debug, Clone, Default)]
pub struct FederationConfig {
    /// The bundle endpoint to serve, if any.
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// A PEM file of roots trusted for `https_web` endpoints in addition to
    /// the system roots (a private CA, or tests).
    pub web_roots_path: Option<PathBuf>,
    /// Relationships declared in the file; written to the store at startup
    /// (the file wins over an API change to the same trust domain).
    pub relationships: Vec<ConfiguredRelationship>,
}

/// How this server serves its own bundle to federated peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpointConfig {
    /// TCP address to listen on (port 0 picks a free port).
    pub address: SocketAddr,
    /// How the endpoint authenticates itself.
    pub profile: EndpointProfile,
    /// `spiffe_refresh_hint` served with the bundle, seconds.
    pub refresh_hint_secs: u64,
}

/// The TLS identity of the bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// An X509-SVID `spiffe://<td>/herald/server`, minted from the server's
    /// CA and renewed at half-life.
    HttpsSpiffe,
    /// A Web PKI certificate from files, re-read when they change.
    HttpsWeb {
        /// PEM certificate chain, leaf first.
        cert_path: PathBuf,
        /// PEM private key (PKCS#8, SEC1 or PKCS#1).
        key_path: PathBuf,
    },
}

/// A relationship from the configuration file, with its bootstrap bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRelationship {
    /// What is stored.
    pub relationship: FederationRelationship,
    /// The trust domain's bundle read from `trust_domain_bundle_path`;
    /// stored when no bundle of that trust domain is stored yet.
    pub bootstrap_bundle: Option<Bundle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    bundle_endpoint: Option<RawEndpoint>,
    web_roots_path: Option<PathBuf>,
    #[serde(default)]
    relationships: Vec<RawRelationship>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    address: String,
    profile: String,
    refresh_hint: Option<String>,
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelationship {
    trust_domain: String,
    bundle_endpoint_url: String,
    profile: String,
    endpoint_spiffe_id: Option<String>,
    trust_domain_bundle_path: Option<PathBuf>,
}

// === impl FederationConfig ===

impl FederationConfig {
    /// Validates the `[federation]` table (`value`) of the server
    /// configuration at `path` for a server of trust domain `own`. Files it
    /// names (bootstrap bundles) are read now; the endpoint's certificate
    /// files are read when the endpoint starts.
    pub fn from_toml(
        value: &toml::Value,
        path: &Path,
        own: &TrustDomain,
    ) -> Result<FederationConfig, ConfigError> {
        let raw: RawFederation =
            value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: format!("[federation]: {}", e.to_string().trim().replace('\n', " ")),
                })?;
        let c = Checker { path };
        let bundle_endpoint = raw
            .bundle_endpoint
            .map(|e| endpoint_config(&c, e))
            .transpose()?;
        if let Some(p) = &raw.web_roots_path {
            c.non_empty_path("federation.web_roots_path", p)?;
        }
        let mut relationships: Vec<ConfiguredRelationship> = Vec::new();
        for (index, r) in raw.relationships.into_iter().enumerate() {
            let configured = relationship_config(&c, index, r, own)?;
            let td = &configured.relationship.trust_domain;
            if relationships
                .iter()
                .any(|o| &o.relationship.trust_domain == td)
            {
                return Err(rel(
                    &c,
                    "federation.relationships.trust_domain",
                    index,
                    format!("{td} is declared twice"),
                ));
            }
            relationships.push(configured);
        }
        Ok(FederationConfig {
            bundle_endpoint,
            web_roots_path: raw.web_roots_path,
            relationships,
        })
    }
}

fn endpoint_config(c: &Checker<'_>, raw: RawEndpoint) -> Result<BundleEndpointConfig, ConfigError> {
    let address = raw.address.parse().map_err(|e| {
        c.invalid(
            "federation.bundle_endpoint.address",
            format!("{:?} is not an IP:port address: {e}", raw.address),
        )
    })?;
    let refresh_hint_secs = match &raw.refresh_hint {
        None => DEFAULT_REFRESH_HINT_SECS,
        Some(v) => {
            let secs = parse_duration_secs(v)
                .map_err(|e| c.invalid("federation.bundle_endpoint.refresh_hint", e))?;
            u64::try_from(secs)
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(|| {
                    c.invalid(
                        "federation.bundle_endpoint.refresh_hint",
                        format!("must be at least 1s, got {v:?}"),
                    )
                })?
        }
    };
    let profile = match raw.profile.as_str() {
        "https_spiffe" => {
            for (key, given) in [
                (
                    "federation.bundle_endpoint.cert_path",
                    raw.cert_path.is_some(),
                ),
                (
                    "federation.bundle_endpoint.key_path",
                    raw.key_path.is_some(),
                ),
            ] {
                if given {
                    return Err(c.invalid(
                        key,
                        "only for profile \"https_web\"; https_spiffe serves the server's SVID",
                    ));
                }
            }
            EndpointProfile::HttpsSpiffe
        }
        "https_web" => {
            let file = |key: &'static str, p: Option<PathBuf>| match p {
                Some(p) if !p.as_os_str().is_empty() => Ok(p),
                _ => Err(c.invalid(key, "required for profile \"https_web\"")),
            };
            EndpointProfile::HttpsWeb {
                cert_path: file("federation.bundle_endpoint.cert_path", raw.cert_path)?,
                key_path: file("federation.bundle_endpoint.key_path", raw.key_path)?,
            }
        }
        other => {
            return Err(c.invalid(
                "federation.bundle_endpoint.profile",
                format!("{other:?} is not a profile; use \"https_spiffe\" or \"https_web\""),
            ))
        }
    };
    Ok(BundleEndpointConfig {
        address,
        profile,
        refresh_hint_secs,
    })
}

fn relationship_config(
    c: &Checker<'_>,
    index: usize,
    raw: RawRelationship,
    own: &TrustDomain,
) -> Result<ConfiguredRelationship, ConfigError> {
    let td = TrustDomain::new(&raw.trust_domain)
        .map_err(|e| rel(c, "federation.relationships.trust_domain", index, e))?;
    if &td == own {
        return Err(rel(
            c,
            "federation.relationships.trust_domain",
            index,
            format!("{td} is this server's own trust domain"),
        ));
    }
    EndpointUrl::parse(&raw.bundle_endpoint_url)
        .map_err(|e| rel(c, "federation.relationships.bundle_endpoint_url", index, e))?;
    let profile = match (raw.profile.as_str(), raw.endpoint_spiffe_id) {
        ("https_web", None) => BundleEndpointProfile::HttpsWeb,
        ("https_web", Some(_)) => {
            return Err(rel(
                c,
                "federation.relationships.endpoint_spiffe_id",
                index,
                "only for profile \"https_spiffe\"",
            ))
        }
        ("https_spiffe", Some(id)) => BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: SpiffeId::parse(&id)
                .map_err(|e| rel(c, "federation.relationships.endpoint_spiffe_id", index, e))?,
        },
        ("https_spiffe", None) => {
            return Err(rel(
                c,
                "federation.relationships.endpoint_spiffe_id",
                index,
                "required for profile \"https_spiffe\"",
            ))
        }
        (other, _) => {
            return Err(rel(
                c,
                "federation.relationships.profile",
                index,
                format!("{other:?} is not a profile; use \"https_spiffe\" or \"https_web\""),
            ))
        }
    };
    let bootstrap_bundle = match &raw.trust_domain_bundle_path {
        None => None,
        Some(p) => {
            let key = "federation.relationships.trust_domain_bundle_path";
            let bytes = std::fs::read(p)
                .map_err(|e| rel(c, key, index, format!("cannot read {}: {e}", p.display())))?;
            let bundle = Bundle::from_spiffe_json(td.clone(), &bytes).map_err(|e| {
                rel(
                    c,
                    key,
                    index,
                    format!("{} is not a SPIFFE bundle: {e}", p.display()),
                )
            })?;
            bundle_trust_domain_check(&bundle)
                .map_err(|e| rel(c, key, index, format!("{}: {e}", p.display())))?;
            Some(bundle)
        }
    };
    // A self-serving https_spiffe endpoint can only be trusted the first
    // time through an operator-supplied bundle (SPIFFE.md §5.4). It may
    // already be stored, so a missing one is reported when fetching.
    Ok(ConfiguredRelationship {
        relationship: FederationRelationship {
            trust_domain: td,
            bundle_endpoint_url: raw.bundle_endpoint_url,
            profile,
        },
        bootstrap_bundle,
    })
}

/// An error about the `index`th relationship.
fn rel(
    c: &Checker<'_>,
    key: &'static str,
    index: usize,
    reason: impl std::fmt::Display,
) -> ConfigError {
    c.item(key, "relationships", index, reason)
}

#[cfg(test)]
#[path = "federation_tests.rs"]
mod tests;
