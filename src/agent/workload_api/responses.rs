//! Builds Workload API responses from one cache snapshot and the caller's
//! selectors. Pure functions: the streaming and transport live in the
//! parent module, so every rule of SPIFFE.md §4.3 that concerns a
//! response's contents is tested here without a socket.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use prost_types::value::Kind;
use serde_json::Value;
use tonic::Status;

use crate::agent::cache::{CacheSnapshot, WorkloadIdentity};
use crate::errors::Chain;
use crate::proto::workload::{JwtBundlesResponse, X509BundlesResponse, X509svid, X509svidResponse};
use crate::registration::Selector;
use crate::spiffe::{Bundle, JwtClaims, TrustDomain};

/// The status message rust-spiffe recognises as "no identity" (SPIFFE.md §4.3).
pub(super) const NO_IDENTITY: &str = "no identity issued";

/// The identities the caller is entitled to, default first, keeping only
/// the first (oldest: the cache is ordered by creation time) of several
/// identities that share a non-empty hint. PermissionDenied when none,
/// or Unavailable while the cache holds only SVIDs restored from disk
/// (the caller's entry may be one the agent has not heard of yet).
pub(crate) fn entitled(
    snap: &CacheSnapshot,
    selectors: &[Selector],
) -> Result<Vec<Arc<WorkloadIdentity>>, Status> {
    let mut hints = HashSet::new();
    let ids: Vec<_> = snap
        .identities_for(selectors)
        .into_iter()
        .filter(|id| {
            if id.svid_chain.is_empty() || id.key_pkcs8.is_empty() {
                tracing::warn!(entry_id = %id.entry_id, "identity without an SVID in the cache; not served");
                return false;
            }
            id.hint.is_empty() || hints.insert(id.hint.clone())
        })
        .collect();
    if ids.is_empty() && snap.restored {
        return Err(Status::unavailable(
            "no saved identity for this caller, and the agent has not synced with its server since it restarted",
        ));
    }
    if ids.is_empty() {
        return Err(Status::permission_denied(NO_IDENTITY));
    }
    Ok(ids)
}

/// The foreign bundles the identities' `federates_with` name and the cache
/// holds; the own trust domain is never among them.
pub(crate) fn federated<'s>(
    snap: &'s CacheSnapshot,
    ids: &[Arc<WorkloadIdentity>],
) -> Vec<(&'s TrustDomain, &'s Bundle)> {
    let wanted: BTreeSet<&TrustDomain> = ids
        .iter()
        .flat_map(|id| id.federates_with.iter())
        .filter(|td| **td != snap.trust_domain)
        .collect();
    snap.federated
        .iter()
        .filter(|(td, _)| wanted.contains(td))
        .map(|(td, b)| (td, b.as_ref()))
        .collect()
}

/// FetchX509SVID: every entitled SVID with the own bundle, plus the
/// federated bundles as concatenated DER, for a caller entitled to `ids`
/// (see [`entitled`]).
pub(super) fn x509_svid_response_for(
    snap: &CacheSnapshot,
    ids: &[Arc<WorkloadIdentity>],
) -> Result<X509svidResponse, Status> {
    let bundle = snap.bundle.x509_authorities_concat();
    if bundle.is_empty() {
        // Clients refuse an SVID with an empty bundle; a later sync fixes it.
        return Err(Status::unavailable(format!(
            "the bundle of {} has no X.509 authorities yet",
            snap.trust_domain.name()
        )));
    }
    let svids = ids
        .iter()
        .map(|id| X509svid {
            spiffe_id: id.spiffe_id.as_str().to_owned(),
            x509_svid: id.svid_chain.concat(),
            x509_svid_key: id.key_pkcs8.clone(),
            bundle: bundle.clone(),
            hint: id.hint.clone(),
        })
        .collect();
    Ok(X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles: federated_x509(snap, ids),
    })
}

/// The caller's federated bundles as concatenated DER, by trust domain ID.
fn federated_x509(snap: &CacheSnapshot, ids: &[Arc<WorkloadIdentity>]) -> HashMap<String, Vec<u8>> {
    federated(snap, ids)
        .into_iter()
        .map(|(td, b)| (td.id_string(), b.x509_authorities_concat()))
        .collect()
}

/// FetchX509Bundles: the own and the federated bundles of a caller
/// entitled to `ids`, DER.
pub(super) fn x509_bundles_response_for(
    snap: &CacheSnapshot,
    ids: &[Arc<WorkloadIdentity>],
) -> Result<X509BundlesResponse, Status> {
    let mut bundles = federated_x509(snap, ids);
    bundles.insert(
        snap.trust_domain.id_string(),
        snap.bundle.x509_authorities_concat(),
    );
    Ok(X509BundlesResponse {
        crl: Vec::new(),
        bundles,
    })
}

/// FetchJWTBundles: the own and the caller's federated bundles as JWKS
/// documents holding JWT keys only. A federated bundle that cannot be
/// encoded is left out (and logged); the own one must encode. For a caller
/// entitled to `ids`.
pub(super) fn jwt_bundles_response_for(
    snap: &CacheSnapshot,
    ids: &[Arc<WorkloadIdentity>],
) -> Result<JwtBundlesResponse, Status> {
    let mut bundles = HashMap::new();
    for (td, b) in federated(snap, ids) {
        match b.jwt_jwks_json() {
            Ok(json) => {
                bundles.insert(td.id_string(), json.into_bytes());
            }
            Err(e) => {
                tracing::warn!(trust_domain = %td.name(), error = %Chain(&e), "federated JWT bundle cannot be encoded; left out");
            }
        }
    }
    let own = snap.bundle.jwt_jwks_json().map_err(|e| {
        tracing::warn!(error = %Chain(&e), "own JWT bundle cannot be encoded");
        Status::unavailable(format!(
            "the JWT bundle of {} cannot be encoded: {e}",
            snap.trust_domain.name()
        ))
    })?;
    bundles.insert(snap.trust_domain.id_string(), own.into_bytes());
    Ok(JwtBundlesResponse { bundles })
}

/// The bundle that validates tokens of `td`: the own or a federated one.
pub(super) fn bundle_for<'s>(snap: &'s CacheSnapshot, td: &TrustDomain) -> Option<&'s Bundle> {
    if *td == snap.trust_domain {
        Some(snap.bundle.as_ref())
    } else {
        snap.federated.get(td).map(Arc::as_ref)
    }
}

/// ValidateJWTSVID's claims: `sub`, `aud` (always a list), `exp`, `iat`
/// and, for tokens of the own trust domain, every other claim. Tokens of a
/// foreign trust domain keep only those four, as SPIRE does.
pub(super) fn claims_struct(claims: &JwtClaims, foreign: bool) -> prost_types::Struct {
    let mut obj = claims.to_json_object();
    if foreign {
        obj.retain(|k, _| matches!(k.as_str(), "sub" | "aud" | "exp" | "iat"));
    }
    prost_types::Struct {
        fields: obj
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => match n.as_f64() {
            Some(f) => Kind::NumberValue(f),
            None => Kind::StringValue(n.to_string()),
        },
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spiffe::SpiffeId;

    fn x509_svid_response(
        snap: &CacheSnapshot,
        selectors: &[Selector],
    ) -> Result<X509svidResponse, Status> {
        x509_svid_response_for(snap, &entitled(snap, selectors)?)
    }

    fn x509_bundles_response(
        snap: &CacheSnapshot,
        selectors: &[Selector],
    ) -> Result<X509BundlesResponse, Status> {
        x509_bundles_response_for(snap, &entitled(snap, selectors)?)
    }

    fn jwt_bundles_response(
        snap: &CacheSnapshot,
        selectors: &[Selector],
    ) -> Result<JwtBundlesResponse, Status> {
        jwt_bundles_response_for(snap, &entitled(snap, selectors)?)
    }

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    fn sel(v: &str) -> Selector {
        Selector::new("unix", v).unwrap()
    }

    fn identity(n: u8, selector: &str, hint: &str, federates: &[&str]) -> Arc<WorkloadIdentity> {
        Arc::new(WorkloadIdentity {
            entry_id: format!("entry-{n}"),
            spiffe_id: SpiffeId::parse(&format!("spiffe://example.org/w{n}")).unwrap(),
            selectors: vec![sel(selector)],
            hint: hint.into(),
            federates_with: federates.iter().map(|t| td(t)).collect(),
            created_at: i64::from(n),
            revision: 1,
            svid_chain: vec![vec![n, 1], vec![n, 2]],
            key_pkcs8: vec![n, 9],
            not_after: 0,
        })
    }

    fn bundle(name: &str, der: u8) -> Arc<Bundle> {
        let mut b = Bundle::new(td(name));
        b.x509_authorities = vec![vec![der]];
        Arc::new(b)
    }

    fn snapshot(identities: Vec<Arc<WorkloadIdentity>>) -> CacheSnapshot {
        let mut federated = BTreeMap::new();
        federated.insert(td("a.org"), bundle("a.org", 0xa));
        federated.insert(td("b.org"), bundle("b.org", 0xb));
        CacheSnapshot {
            trust_domain: td("example.org"),
            identities,
            bundle: bundle("example.org", 0xe),
            federated,
            generation: 1,
            ready: true,
            restored: false,
            server_unreachable: false,
        }
    }

    #[test]
    fn x509_svid_response_follows_the_spec() {
        let snap = snapshot(vec![
            identity(1, "uid:1", "internal", &["a.org", "missing.org"]),
            identity(2, "uid:2", "", &["b.org"]),
            identity(3, "uid:1", "internal", &["b.org"]),
            identity(4, "uid:1", "", &[]),
        ]);
        let resp = x509_svid_response(&snap, &[sel("uid:1")]).unwrap();
        let ids: Vec<_> = resp.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        // Index 0 is the oldest; the younger duplicate hint is dropped; the
        // non-matching identity is absent.
        assert_eq!(ids, ["spiffe://example.org/w1", "spiffe://example.org/w4"]);
        assert_eq!(resp.svids[0].x509_svid, [1, 1, 1, 2]);
        assert_eq!(resp.svids[0].x509_svid_key, [1, 9]);
        assert_eq!(resp.svids[0].bundle, [0xe]);
        assert_eq!(resp.svids[0].hint, "internal");
        // Only a.org: b.org was named by the dropped identity (and the
        // non-matching one), missing.org is not in the cache.
        let fed: Vec<_> = resp.federated_bundles.iter().collect();
        assert_eq!(fed, [(&"spiffe://a.org".to_string(), &vec![0xa])]);
    }

    #[test]
    fn no_identity_is_permission_denied_everywhere() {
        let snap = snapshot(vec![identity(1, "uid:1", "", &[])]);
        let caller = [sel("uid:7")];
        for status in [
            x509_svid_response(&snap, &caller).unwrap_err(),
            x509_bundles_response(&snap, &caller).unwrap_err(),
            jwt_bundles_response(&snap, &caller).unwrap_err(),
        ] {
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert_eq!(status.message(), NO_IDENTITY);
        }
    }

    #[test]
    fn no_identity_in_a_restored_cache_is_unavailable() {
        let mut snap = snapshot(vec![identity(1, "uid:1", "", &[])]);
        snap.restored = true;
        let status = x509_svid_response(&snap, &[sel("uid:7")]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let resp = x509_svid_response(&snap, &[sel("uid:1")]).unwrap();
        assert_eq!(resp.svids.len(), 1, "what was saved is served");
    }

    #[test]
    fn empty_own_bundle_is_unavailable_not_a_bad_response() {
        let mut snap = snapshot(vec![identity(1, "uid:1", "", &[])]);
        snap.bundle = Arc::new(Bundle::new(td("example.org")));
        let status = x509_svid_response(&snap, &[sel("uid:1")]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn bundle_responses_hold_own_and_federated_domains() {
        let snap = snapshot(vec![identity(1, "uid:1", "", &["b.org", "example.org"])]);
        let resp = x509_bundles_response(&snap, &[sel("uid:1")]).unwrap();
        let mut keys: Vec<_> = resp.bundles.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["spiffe://b.org", "spiffe://example.org"]);
        assert_eq!(resp.bundles["spiffe://example.org"], [0xe]);

        let resp = jwt_bundles_response(&snap, &[sel("uid:1")]).unwrap();
        let own: Value = serde_json::from_slice(&resp.bundles["spiffe://example.org"]).unwrap();
        assert_eq!(own, serde_json::json!({ "keys": [] }));
        assert!(resp.bundles.contains_key("spiffe://b.org"));
    }

    #[test]
    fn claims_become_a_struct() {
        let mut extra = serde_json::Map::new();
        extra.insert("iss".into(), "issuer".into());
        extra.insert("nested".into(), serde_json::json!({ "n": [1, true, null] }));
        let claims = JwtClaims {
            sub: SpiffeId::parse("spiffe://example.org/w").unwrap(),
            aud: vec!["a".into()],
            exp: 2_000_000_000,
            iat: Some(1_000),
            extra,
        };
        let s = claims_struct(&claims, false);
        let kind = |k: &str| s.fields[k].kind.clone().unwrap();
        assert_eq!(
            kind("sub"),
            Kind::StringValue("spiffe://example.org/w".into())
        );
        assert_eq!(kind("exp"), Kind::NumberValue(2e9));
        assert_eq!(kind("iat"), Kind::NumberValue(1000.0));
        assert_eq!(
            kind("aud"),
            Kind::ListValue(prost_types::ListValue {
                values: vec![prost_types::Value {
                    kind: Some(Kind::StringValue("a".into()))
                }]
            })
        );
        assert_eq!(kind("iss"), Kind::StringValue("issuer".into()));
        assert!(matches!(kind("nested"), Kind::StructValue(_)));

        let foreign = claims_struct(&claims, true);
        let keys: Vec<_> = foreign.fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["aud", "exp", "iat", "sub"]);
    }
}
