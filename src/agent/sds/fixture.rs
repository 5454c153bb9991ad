//! Snapshots and catalogues for the unit tests of this module: identities
//! with placeholder certificates (the bytes only have to round-trip).

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};

use super::resources::{unpack, Catalogue, Validation};
use crate::agent::cache::{CacheSnapshot, WorkloadIdentity};
use crate::config::SdsSettings;
use crate::registration::Selector;
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

pub(super) fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

pub(super) fn sel(v: &str) -> Selector {
    Selector::new("unix", v).unwrap()
}

/// `spiffe://example.org/w<n>` for callers with `selector`, its SVID's
/// bytes marked with `n` and `serial`.
pub(super) fn identity(
    n: u8,
    selector: &str,
    federates: &[&str],
    serial: u8,
) -> Arc<WorkloadIdentity> {
    Arc::new(WorkloadIdentity {
        entry_id: format!("entry-{n}"),
        spiffe_id: SpiffeId::parse(&format!("spiffe://example.org/w{n}")).unwrap(),
        selectors: vec![sel(selector)],
        hint: String::new(),
        federates_with: federates.iter().map(|t| td(t)).collect(),
        created_at: i64::from(n),
        revision: 1,
        svid_chain: vec![vec![n, serial], vec![n, 0xca]],
        key_pkcs8: vec![n, serial, 9],
        not_after: 0,
    })
}

pub(super) fn bundle(name: &str, roots: &[u8]) -> Arc<Bundle> {
    let mut b = Bundle::new(td(name));
    b.x509_authorities = roots.iter().map(|r| vec![*r]).collect();
    Arc::new(b)
}

/// example.org (root 0xe) with `identities`, holding the federated
/// bundles `federated` (name, roots).
pub(super) fn snapshot(
    identities: Vec<Arc<WorkloadIdentity>>,
    federated: &[(&str, &[u8])],
) -> CacheSnapshot {
    let federated: BTreeMap<_, _> = federated
        .iter()
        .map(|(name, roots)| (td(name), bundle(name, roots)))
        .collect();
    CacheSnapshot {
        trust_domain: td("example.org"),
        identities,
        bundle: bundle("example.org", &[0xe]),
        federated,
        generation: 1,
        ready: true,
        restored: false,
        server_unreachable: false,
    }
}

/// The catalogue of `uid:1` with SPIRE's names.
pub(super) fn catalogue(snap: &CacheSnapshot, validation: Validation) -> Catalogue {
    Catalogue::build(snap, &[sel("uid:1")], &SdsSettings::default(), validation).unwrap()
}

/// The secret named `name` in `cat`, unpacked.
pub(super) fn secret(cat: &Catalogue, name: &str) -> Secret {
    let s = unpack(&cat.get(name).unwrap_or_else(|| panic!("no {name}")).secret);
    assert_eq!(s.name, name);
    s
}

/// A TlsCertificate's chain and key, as text.
pub(super) fn tls_pem(s: &Secret) -> (String, String) {
    use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
    let Some(secret::Type::TlsCertificate(t)) = &s.r#type else {
        panic!("{} is not a TLS certificate", s.name)
    };
    let text = |d: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match d
        .as_ref()
        .and_then(|d| d.specifier.as_ref())
    {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not inline bytes: {other:?}"),
    };
    (text(&t.certificate_chain), text(&t.private_key))
}

/// Either flavour refuses a request for another resource type, and a
/// subscription to one name more than a stream may hold; `subscribe`
/// builds that flavour's request for some names.
pub(super) fn refuses_other_types_and_too_many_names<P>(
    wrong_type: P::Request,
    subscribe: impl Fn(&[&str]) -> P::Request,
) where
    P: super::stream::Protocol + Default,
{
    let refused = refusal(P::default().on_request(wrong_type));
    assert_eq!(refused, tonic::Code::InvalidArgument);
    let many: Vec<String> = (0..=super::stream::MAX_NAMES)
        .map(|i| format!("n{i}"))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = refusal(P::default().on_request(subscribe(&refs)));
    assert_eq!(refused, tonic::Code::InvalidArgument);
}

/// The code a refused request got.
#[track_caller]
pub(super) fn refusal<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.unwrap_err().code()
}

/// One workload (uid 1, SVID serial `serial`) that federates with a.org
/// when `with_a`; the cache holds a.org's bundle either way.
pub(super) fn fed_snap(serial: u8, with_a: bool) -> CacheSnapshot {
    let federates: &[&str] = if with_a { &["a.org"] } else { &[] };
    snapshot(
        vec![identity(1, "uid:1", federates, serial)],
        &[("a.org", &[0xa])],
    )
}

/// The catalogue of `snap` with the SPIFFE validator.
pub(super) fn cat(snap: &CacheSnapshot) -> Catalogue {
    catalogue(snap, Validation::SpiffeValidator)
}
