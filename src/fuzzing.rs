//! The bodies of the fuzz targets, shared by `fuzz/` (cargo-fuzz, nightly)
//! and by `tests/fuzz_corpus.rs`, which runs them over the seed corpus and
//! mutations of it on stable. Each body must never panic; where a parse
//! succeeds it also checks that encoding and re-parsing give the same value.

use crate::spiffe::{jwt, Bundle, SpiffeId, TrustDomain};

/// SPIFFE ID and trust-domain parsing.
pub fn spiffe_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        let again = SpiffeId::parse(id.as_str());
        assert_eq!(
            again.as_ref().ok(),
            Some(&id),
            "SPIFFE ID did not round-trip"
        );
        assert!(id.as_str().len() <= 2048);
    }
    if let Ok(td) = TrustDomain::parse(text) {
        assert_eq!(TrustDomain::new(td.name()).ok(), Some(td));
    }
}

/// SPIFFE bundle JSON, as a federation peer or an operator may send it.
/// What the key budget of a peer's bundle lets through parses the same
/// without it.
pub fn bundle_json(data: &[u8]) {
    let Ok(td) = TrustDomain::new("example.org") else {
        return;
    };
    let limited = Bundle::from_spiffe_json_limited(td.clone(), data, 4);
    let parsed = Bundle::from_spiffe_json(td.clone(), data);
    if let Ok(limited) = &limited {
        assert_eq!(parsed.as_ref().ok(), Some(limited));
    }
    if let Ok(bundle) = parsed {
        let json = bundle
            .to_spiffe_json()
            .unwrap_or_else(|e| panic!("a parsed bundle failed to encode: {e}"));
        let again = Bundle::from_spiffe_json(td, json.as_bytes())
            .unwrap_or_else(|e| panic!("an encoded bundle failed to parse: {e}"));
        assert_eq!(again.x509_authorities, bundle.x509_authorities);
        assert_eq!(again.jwt_authorities.len(), bundle.jwt_authorities.len());
        let _ = bundle.jwt_jwks_json();
    }
}

/// PKCS#10 CSRs, as agents send them.
pub fn csr(data: &[u8]) {
    let _ = crate::ca::verify_csr(data);
}

/// JWT-SVIDs, as workloads present them for validation.
pub fn jwt_svid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = jwt::parse_compact(text) {
        assert!(!parsed.header.kid.is_empty());
        assert!(!parsed.claims.aud.is_empty());
    }
}

/// The Workload API's `:authority` shim (HTTP/2 frames and HPACK from any
/// local user). Whatever it passes on is bounded: each header block it
/// re-encodes is at most the decoded header list limit, and every block
/// costs the client at least one 9-byte frame header.
pub fn h2_authority(data: &[u8]) {
    use crate::agent::h2_authority::{rewrite_bytes, DEFAULT_MAX_HEADER_LIST_SIZE};
    if let Ok(out) = rewrite_bytes(data) {
        let blocks = data.len() / 9 + 1;
        let bound = data.len() + blocks * (DEFAULT_MAX_HEADER_LIST_SIZE + 4 * 9);
        assert!(
            out.len() <= bound,
            "{} bytes in, {} out: more than the limits allow",
            data.len(),
            out.len()
        );
        assert_eq!(out.get(..24.min(data.len())), data.get(..24));
    }
}

/// The agent's saved workload SVIDs (`workload_svids`), as a restarted
/// agent reads them from its data directory: whatever the file holds, the
/// read ends in a refusal or in identities whose SVID names their entry.
pub fn workload_svids(data: &[u8]) {
    use crate::agent::persist::format::{decode, sealed};
    use crate::spiffe::{SpiffeId, TrustDomain};
    let (Ok(td), Ok(agent)) = (
        TrustDomain::new("example.org"),
        SpiffeId::parse("spiffe://example.org/agent"),
    ) else {
        return;
    };
    if let Ok(restored) = decode(&sealed(data), &td, &agent, 0) {
        for id in &restored.identities {
            assert!(!id.identity.svid_chain.is_empty());
        }
    }
}

/// A k8s_psat agent's projected token, as any peer of the node API may
/// send it: it parses or is refused, and it never verifies against a
/// cluster key set (the corpus has no valid signature, and mutations
/// cannot make one).
pub fn k8s_psat_token(data: &[u8]) {
    use crate::k8s_psat::jwks::{KeySet, Rules};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = crate::k8s_psat::parse_token(text) {
        assert!(text.starts_with(parsed.signing_input));
        assert!(!parsed.claims.identity.namespace.is_empty());
        assert!(!parsed.claims.identity.service_account.is_empty());
    }
    let jwks = include_bytes!("../tests/fixtures/k8s/jwks.json");
    if let Ok(keys) = KeySet::parse(jwks) {
        let rules = Rules {
            audience: crate::k8s_psat::DEFAULT_AUDIENCE,
            issuer: None,
            leeway: 30,
        };
        assert!(keys.verify(text, &rules, 0).is_err());
    }
}

/// What a Kubernetes API server (or a host posing as one) answers the
/// k8s_psat attestor: a TokenReview, a pod, a node, a JWKS. Each reader
/// refuses or returns what it found; none panics.
pub fn k8s_api_json(data: &[u8]) {
    use crate::k8s_psat::{jwks::KeySet, objects, review};
    if let Ok(id) = review::interpret(data, crate::k8s_psat::DEFAULT_AUDIENCE) {
        assert!(!id.namespace.is_empty() && !id.service_account.contains(':'));
    }
    if let Ok(pod) = objects::parse_pod(data) {
        assert!(!pod.uid.is_empty());
    }
    let _ = objects::parse_node(data);
    if let Ok(keys) = KeySet::parse(data) {
        assert!(!keys.is_empty() && keys.len() <= crate::k8s_psat::jwks::MAX_KEYS);
    }
}
