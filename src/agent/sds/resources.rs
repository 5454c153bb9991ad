//! The secrets one caller may receive at one cache snapshot, under the
//! names Envoy asks for (SPIFFE.md §7; SPIRE's names, so a configuration
//! written for SPIRE works unchanged):
//!
//! - the default X509-SVID as a TlsCertificate named `default`, and every
//!   SVID the caller is entitled to under its SPIFFE ID;
//! - the own trust domain's bundle as a validation context named `ROOTCA`,
//!   and every bundle the caller may trust (own, and federated ones its
//!   entries name) under its trust domain ID (`spiffe://example.org`);
//! - `ALL`: one validation context with all of those bundles.
//!
//! A wildcard subscription gets the SVIDs under their SPIFFE IDs and the
//! bundles under their trust domain IDs, as SPIRE serves it. Each resource
//! carries a version that is a hash of its content, so a resource that did
//! not change keeps its version across snapshots and reconnections.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, DataSource, Node, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::google::protobuf::{value::Kind, Any};
use envoy_types::util::pack_any;
use prost::Name as _;
use tonic::Status;

use crate::agent::cache::{CacheSnapshot, WorkloadIdentity};
use crate::agent::workload_api::responses;
use crate::ca::keys::der_to_pem;
use crate::config::SdsSettings;
use crate::registration::Selector;
use crate::spiffe::{Bundle, TrustDomain};

/// The name of Envoy's SPIFFE certificate validator extension.
const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";
/// The node metadata key with which an Envoy asks for flat `trusted_ca`
/// validation contexts (SPIRE's).
const DISABLE_KEY: &str = "disable_spiffe_cert_validation";

/// The type URL of every resource SDS serves.
pub(super) fn secret_type_url() -> String {
    Secret::type_url()
}

/// How validation contexts are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validation {
    /// Envoy's SPIFFE certificate validator: each bundle bound to its trust
    /// domain, so a peer of one domain cannot pass with another's CA.
    SpiffeValidator,
    /// A flat `trusted_ca` with every root: for Envoy 1.17 and older, or
    /// when the operator or the node asks for it.
    TrustedCa,
}

impl Validation {
    /// The SPIFFE validator, unless `agent.toml` disables it, the node's
    /// metadata sets `disable_spiffe_cert_validation` (true or "true"), or
    /// the node is an Envoy of version 1.17 or older (which lacks it).
    pub(super) fn for_node(node: Option<&Node>, disabled: bool) -> Validation {
        let asked = node
            .and_then(|n| n.metadata.as_ref())
            .and_then(|m| m.fields.get(DISABLE_KEY))
            .and_then(|v| v.kind.as_ref())
            .is_some_and(|k| match k {
                Kind::BoolValue(b) => *b,
                Kind::StringValue(s) => s == "true",
                _ => false,
            });
        let old_envoy = match node.and_then(|n| n.user_agent_version_type.as_ref()) {
            Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
                .version
                .as_ref()
                .is_some_and(|v| (v.major_number, v.minor_number) <= (1, 17)),
            _ => false,
        };
        if disabled || asked || old_envoy {
            Validation::TrustedCa
        } else {
            Validation::SpiffeValidator
        }
    }
}

/// One secret as it goes on the wire, with its version.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resource {
    /// The `Secret`, packed.
    pub(super) secret: Any,
    /// A hash of the packed secret.
    pub(super) version: String,
}

/// Every secret one caller may receive at one snapshot, by name.
#[derive(Debug, Default)]
pub(super) struct Catalogue {
    by_name: BTreeMap<String, Resource>,
    wildcard: Vec<String>,
    generation: u64,
}

// === impl Catalogue ===

impl Catalogue {
    /// What `selectors` may receive from `snap`. PermissionDenied when the
    /// caller is entitled to nothing, Unavailable when the own bundle has
    /// no X.509 authority yet (both as the Workload API answers).
    pub(super) fn build(
        snap: &CacheSnapshot,
        selectors: &[Selector],
        names: &SdsSettings,
        validation: Validation,
    ) -> Result<Catalogue, Status> {
        let ids = responses::entitled(snap, selectors)?;
        if snap.bundle.x509_authorities.is_empty() {
            return Err(Status::unavailable(format!(
                "the bundle of {} has no X.509 authorities yet",
                snap.trust_domain.name()
            )));
        }
        let mut cat = Catalogue {
            generation: snap.generation,
            ..Catalogue::default()
        };
        for (i, id) in ids.iter().enumerate() {
            let tls = secret::Type::TlsCertificate(tls_certificate(id));
            if i == 0 {
                cat.insert(&names.default_svid_name, tls.clone(), false);
            }
            cat.insert(id.spiffe_id.as_str(), tls, true);
        }
        let mut bundles: Vec<(&TrustDomain, &Bundle)> = vec![(&snap.trust_domain, &snap.bundle)];
        bundles.extend(
            responses::federated(snap, &ids)
                .into_iter()
                // A JWT-only bundle would be an empty trust_bundle, which Envoy refuses.
                .filter(|(_, b)| !b.x509_authorities.is_empty()),
        );
        bundles.sort_by(|a, b| a.0.name().cmp(b.0.name()));
        for (td, bundle) in &bundles {
            let vc = validation_context(validation, &[(td, bundle)]);
            if *td == &snap.trust_domain {
                cat.insert(&names.default_bundle_name, vc.clone(), false);
            }
            cat.insert(&td.id_string(), vc, true);
        }
        let all = validation_context(validation, &bundles);
        cat.insert(&names.default_all_bundles_name, all, false);
        Ok(cat)
    }

    /// Adds `kind` under `name` unless the name is taken (the first, the
    /// default identity, wins).
    fn insert(&mut self, name: &str, kind: secret::Type, wildcard: bool) {
        if self.by_name.contains_key(name) {
            return;
        }
        let secret = pack_any(Secret {
            name: name.to_owned(),
            r#type: Some(kind),
        });
        let version = short_hash(&[&secret.value]);
        self.by_name
            .insert(name.to_owned(), Resource { secret, version });
        if wildcard {
            self.wildcard.push(name.to_owned());
        }
    }

    /// The secret named `name`, if this caller may have it.
    pub(super) fn get(&self, name: &str) -> Option<&Resource> {
        self.by_name.get(name)
    }

    /// The names a wildcard subscription receives, SVIDs first.
    pub(super) fn wildcard(&self) -> &[String] {
        &self.wildcard
    }

    /// The cache snapshot this was built from.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

/// The first 8 bytes of SHA-256 over `parts` (each length-prefixed), hex.
pub(super) fn short_hash(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex::encode(&ctx.finish().as_ref()[..8])
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineBytes(bytes)),
        ..DataSource::default()
    })
}

fn certificates_pem(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|d| der_to_pem(d, "CERTIFICATE")).collect()
}

/// The SVID's chain (leaf first) and its PKCS#8 key, both PEM.
fn tls_certificate(id: &WorkloadIdentity) -> TlsCertificate {
    TlsCertificate {
        certificate_chain: inline(certificates_pem(&id.svid_chain).into_bytes()),
        private_key: inline(der_to_pem(&id.key_pkcs8, "PRIVATE KEY").into_bytes()),
        ..TlsCertificate::default()
    }
}

/// A validation context trusting `bundles`.
fn validation_context(validation: Validation, bundles: &[(&TrustDomain, &Bundle)]) -> secret::Type {
    let vc = match validation {
        Validation::SpiffeValidator => {
            let config = SpiffeCertValidatorConfig {
                trust_domains: bundles
                    .iter()
                    .map(|(td, b)| spiffe_cert_validator_config::TrustDomain {
                        name: td.name().to_owned(),
                        trust_bundle: inline(certificates_pem(&b.x509_authorities).into_bytes()),
                        ..Default::default()
                    })
                    .collect(),
                ..SpiffeCertValidatorConfig::default()
            };
            CertificateValidationContext {
                custom_validator_config: Some(TypedExtensionConfig {
                    name: SPIFFE_VALIDATOR.to_owned(),
                    typed_config: Some(pack_any(config)),
                }),
                ..CertificateValidationContext::default()
            }
        }
        Validation::TrustedCa => {
            let pem: String = bundles
                .iter()
                .map(|(_, b)| certificates_pem(&b.x509_authorities))
                .collect();
            CertificateValidationContext {
                trusted_ca: inline(pem.into_bytes()),
                ..CertificateValidationContext::default()
            }
        }
    };
    secret::Type::ValidationContext(vc)
}

/// Decodes a packed secret (for tests and logs).
#[cfg(test)]
pub(super) fn unpack(any: &Any) -> Secret {
    use prost::Message as _;
    Secret::decode(any.value.as_slice()).unwrap()
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
