//! Profile tests: what the CA puts in certificates and tokens, checked
//! field by field against SPIFFE.md sections 2 and 3.

use std::sync::Arc;

use der::Decode as _;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::Certificate;

use super::*;
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

const NOW: i64 = 1_800_000_000;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn root() -> X509Authority {
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    X509Authority::self_signed(&td(), key, 24 * 3600, NOW).unwrap()
}

fn leaf(ca: &X509Authority, id: &str, ttl: i64, dns: &[String]) -> (SignedCert, KeyPair) {
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spki = key.public_key_spki();
    let id = SpiffeId::parse(id).unwrap();
    let cert = ca
        .sign_svid(
            &SvidRequest {
                spiffe_id: &id,
                public_key_spki: &spki,
                ttl_secs: ttl,
                dns_names: dns,
            },
            NOW,
        )
        .unwrap();
    (cert, key)
}

fn ext<T: der::Decode<'static> + const_oid::AssociatedOid + 'static>(
    cert: &'static Certificate,
) -> (bool, T) {
    cert.tbs_certificate.get::<T>().unwrap().unwrap()
}

fn parse(der: &[u8]) -> &'static Certificate {
    Box::leak(Box::new(Certificate::from_der(der).unwrap()))
}

#[test]
fn leaf_follows_the_x509_svid_profile() {
    let ca = root();
    let (svid, _) = leaf(&ca, "spiffe://example.org/web", 3600, &[]);
    let cert = parse(&svid.cert_der);
    let ca_cert = parse(ca.cert_der());

    let (san_critical, san) = ext::<SubjectAltName>(cert);
    let uris: Vec<_> = san
        .0
        .iter()
        .filter(|n| {
            matches!(
                n,
                x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(_)
            )
        })
        .collect();
    assert_eq!(uris.len(), 1, "exactly one URI SAN");
    // Our leaf subject is not empty, so SAN need not be critical.
    assert!(!cert.tbs_certificate.subject.0.is_empty());
    assert!(!san_critical);

    let (bc_critical, bc) = ext::<BasicConstraints>(cert);
    assert!(bc_critical && !bc.ca);
    let (ku_critical, ku) = ext::<KeyUsage>(cert);
    assert!(ku_critical);
    assert!(ku.0.contains(KeyUsages::DigitalSignature));
    assert!(
        !ku.0.contains(KeyUsages::KeyEncipherment),
        "no keyEncipherment on EC"
    );
    assert!(!ku.0.contains(KeyUsages::KeyCertSign) && !ku.0.contains(KeyUsages::CRLSign));
    let (_, eku) = ext::<ExtendedKeyUsage>(cert);
    assert!(eku.0.contains(&const_oid::db::rfc5280::ID_KP_SERVER_AUTH));
    assert!(eku.0.contains(&const_oid::db::rfc5280::ID_KP_CLIENT_AUTH));

    // SKI is RFC 5280 method 1: SHA-1 of the subjectPublicKey bits.
    let (_, ski) = ext::<SubjectKeyIdentifier>(cert);
    let bits = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    assert_eq!(ski.0.as_bytes(), template::key_identifier(bits).as_slice());
    let (_, aki) = ext::<AuthorityKeyIdentifier>(cert);
    let (_, ca_ski) = ext::<SubjectKeyIdentifier>(ca_cert);
    assert_eq!(aki.key_identifier.unwrap().as_bytes(), ca_ski.0.as_bytes());

    // 128 random bits: at most 16 magnitude bytes, and two serials differ.
    let serial = cert.tbs_certificate.serial_number.as_bytes();
    let magnitude = serial.iter().skip_while(|b| **b == 0).count();
    assert!((8..=16).contains(&magnitude), "serial {serial:?}");
    let (other, _) = leaf(&ca, "spiffe://example.org/web", 3600, &[]);
    assert_ne!(other.serial, svid.serial);

    let nb = cert
        .tbs_certificate
        .validity
        .not_before
        .to_unix_duration()
        .as_secs() as i64;
    assert_eq!(nb, NOW - template::BACKDATE_SECS);
    // With a self-signed CA the chain is just the leaf.
    assert_eq!(svid.chain.len(), 1);
}

#[test]
fn leaf_is_accepted_by_the_spiffe_crate() {
    let ca = root();
    let (svid, key) = leaf(&ca, "spiffe://example.org/ns/prod/sa/web", 3600, &[]);
    let parsed = spiffe::X509Svid::parse_from_der(&svid.cert_der, key.pkcs8_der()).unwrap();
    assert_eq!(
        parsed.spiffe_id().to_string(),
        "spiffe://example.org/ns/prod/sa/web"
    );
}

#[test]
fn not_after_is_capped_at_the_ca() {
    let ca = root();
    let (svid, _) = leaf(&ca, "spiffe://example.org/web", 10 * 24 * 3600, &[]);
    assert_eq!(svid.not_after, ca.not_after());
}

#[test]
fn dns_names_become_sans_and_cn() {
    let ca = root();
    let dns = vec!["web.example.org".to_string(), "web".to_string()];
    let (svid, _) = leaf(&ca, "spiffe://example.org/web", 60, &dns);
    let cert = parse(&svid.cert_der);
    let (_, san) = ext::<SubjectAltName>(cert);
    assert_eq!(san.0.len(), 3);
    assert!(cert
        .tbs_certificate
        .subject
        .to_string()
        .contains("CN=web.example.org"));
}

#[test]
fn ca_certificate_profile() {
    let ca = root();
    let cert = parse(ca.cert_der());
    let (bc_critical, bc) = ext::<BasicConstraints>(cert);
    assert!(bc_critical && bc.ca && bc.path_len_constraint.is_none());
    let (ku_critical, ku) = ext::<KeyUsage>(cert);
    assert!(ku_critical && ku.0.contains(KeyUsages::KeyCertSign));
    assert!(!ku.0.contains(KeyUsages::DigitalSignature));
    let facts = x509::cert_facts(ca.cert_der()).unwrap();
    assert_eq!(facts.uri_sans, vec!["spiffe://example.org".to_string()]);
}

#[test]
fn refuses_other_trust_domains_root_ids_bad_ttls_and_expired_ca() {
    let ca = root();
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spki = key.public_key_spki();
    let sign = |id: &str, ttl: i64, now: i64| {
        let id = SpiffeId::parse(id).unwrap();
        ca.sign_svid(
            &SvidRequest {
                spiffe_id: &id,
                public_key_spki: &spki,
                ttl_secs: ttl,
                dns_names: &[],
            },
            now,
        )
    };
    assert!(matches!(
        sign("spiffe://other.org/x", 60, NOW),
        Err(X509Error::WrongTrustDomain { .. })
    ));
    assert!(matches!(
        sign("spiffe://example.org", 60, NOW),
        Err(X509Error::NotALeafId(_))
    ));
    assert!(matches!(
        sign("spiffe://example.org/x", 0, NOW),
        Err(X509Error::BadTtl(0))
    ));
    assert!(matches!(
        sign("spiffe://example.org/x", 60, ca.not_after()),
        Err(X509Error::CaExpired { .. })
    ));
}

#[test]
fn intermediate_chain_is_returned_without_the_root() {
    let ca = root();
    let ikey = Arc::new(KeyPair::generate(KeyType::EcP384).unwrap());
    let signed = ca
        .sign_ca(&td(), &ikey.public_key_spki(), 3600, NOW)
        .unwrap();
    let inter = X509Authority::from_parts(&td(), signed.cert_der.clone(), vec![], ikey).unwrap();
    let (svid, _) = leaf(&inter, "spiffe://example.org/web", 60, &[]);
    assert_eq!(svid.chain.len(), 2);
    assert_eq!(svid.chain[1], signed.cert_der);
    // The intermediate's lifetime caps its leaves.
    assert!(inter.not_after() <= ca.not_after());
}

#[test]
fn a_downstream_ca_carries_its_path_len_constraint() {
    let ca = root();
    let ikey = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    for n in [0u8, 2] {
        let signed = ca
            .sign_downstream_ca(&td(), &ikey.public_key_spki(), 3600, n, NOW)
            .unwrap();
        let (critical, bc) = ext::<BasicConstraints>(parse(&signed.cert_der));
        assert!(critical && bc.ca);
        assert_eq!(bc.path_len_constraint, Some(n));
    }
}

#[test]
fn from_parts_rejects_a_key_that_is_not_the_cas() {
    let ca = root();
    let other = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let err = X509Authority::from_parts(&td(), ca.cert_der().to_vec(), vec![], other).unwrap_err();
    assert!(matches!(err, X509Error::KeyMismatch));
    let (svid, _) = leaf(&ca, "spiffe://example.org/web", 60, &[]);
    let any = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    assert!(X509Authority::from_parts(&td(), svid.cert_der, vec![], any).is_err());
}

fn jwt_setup(key_type: KeyType) -> (JwtKey, Bundle) {
    let key = Arc::new(KeyPair::generate(key_type).unwrap());
    let jwt = JwtKey::new(jwt::new_kid().unwrap(), key, NOW + 3600);
    let mut bundle = Bundle::new(td());
    bundle.jwt_authorities.push(jwt.authority());
    (jwt, bundle)
}

#[test]
fn jwt_carries_iss_only_when_configured() {
    let (key, _) = jwt_setup(KeyType::EcP256);
    let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let aud = ["sts.amazonaws.com".to_string()];
    let iss = |token: &str| {
        crate::spiffe::jwt::parse_compact(token)
            .unwrap()
            .claims
            .extra
            .get("iss")
            .cloned()
    };
    let plain = key.sign(&sub, &aud, 300, NOW).unwrap();
    assert_eq!(iss(&plain), None);
    let issued = key
        .sign_issued(Some("https://oidc.example.org"), &sub, &aud, 300, NOW)
        .unwrap();
    assert_eq!(iss(&issued), Some("https://oidc.example.org".into()));
}

#[test]
fn jwt_sign_and_verify() {
    for kt in [KeyType::EcP256, KeyType::EcP384] {
        let (key, bundle) = jwt_setup(kt);
        assert_eq!(key.kid().len(), 32);
        let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let token = key.sign(&sub, &["db".to_string()], 300, NOW).unwrap();
        let claims = verify_jwt_svid(
            &token,
            |t| (t == &bundle.trust_domain).then_some(&bundle),
            "db",
            NOW + 1,
        )
        .unwrap();
        assert_eq!(claims.sub, sub);
        assert_eq!(claims.exp, NOW + 300);
        assert_eq!(claims.iat, Some(NOW));

        // The header is exactly alg, kid, typ=JWT.
        let parsed = crate::spiffe::jwt::parse_compact(&token).unwrap();
        assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
        assert_eq!(parsed.header.alg, kt.jwt_algorithm());
    }
}

#[test]
fn jwt_is_accepted_by_the_spiffe_crate() {
    let (key, bundle) = jwt_setup(KeyType::EcP256);
    let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let token = key
        .sign(
            &sub,
            &["db".to_string()],
            300,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        )
        .unwrap();
    let parsed = spiffe::JwtSvid::parse_insecure(&token).unwrap();
    assert_eq!(parsed.spiffe_id().to_string(), "spiffe://example.org/web");
    // Our Workload API JWKS is what the spiffe crate expects, kid and all.
    let jwks = bundle.jwt_jwks_json().unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let parsed_bundle = spiffe::JwtBundle::from_jwt_authorities(td, jwks.as_bytes()).unwrap();
    assert!(parsed_bundle.find_jwt_authority(key.kid()).is_some());
}

#[test]
fn jwt_rejections() {
    let (key, bundle) = jwt_setup(KeyType::EcP256);
    let lookup = |t: &TrustDomain| (t == &bundle.trust_domain).then_some(&bundle);
    let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let token = key.sign(&sub, &["db".to_string()], 300, NOW).unwrap();

    // Tampered payload: flip a character in the claims part.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims = parts[1].clone().into_bytes();
    claims[5] = if claims[5] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(claims).unwrap();
    let tampered = parts.join(".");
    assert!(verify_jwt_svid(&tampered, lookup, "db", NOW).is_err());

    // Tampered signature.
    let mut sig_tampered = token.clone();
    let last = sig_tampered.pop().unwrap();
    sig_tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(
        verify_jwt_svid(&sig_tampered, lookup, "db", NOW),
        Err(JwtVerifyError::BadSignature | JwtVerifyError::Malformed(_))
    ));

    assert!(matches!(
        verify_jwt_svid(&token, lookup, "other", NOW),
        Err(JwtVerifyError::WrongAudience(_))
    ));
    assert!(matches!(
        verify_jwt_svid(&token, lookup, "db", NOW + 300),
        Err(JwtVerifyError::Expired { .. })
    ));
    // A key from another bundle does not verify it.
    let (_, other_bundle) = jwt_setup(KeyType::EcP256);
    assert!(matches!(
        verify_jwt_svid(&token, |_| Some(&other_bundle), "db", NOW),
        Err(JwtVerifyError::UnknownKey { .. })
    ));
    // No bundle for the trust domain.
    assert!(matches!(
        verify_jwt_svid(&token, |_| None, "db", NOW),
        Err(JwtVerifyError::NoBundle(_))
    ));
    // Signing refuses what would make an invalid token.
    assert!(matches!(
        key.sign(&sub, &[], 60, NOW),
        Err(JwtSignError::NoAudience)
    ));
    assert!(matches!(
        key.sign(&sub, &["a".into()], 0, NOW),
        Err(JwtSignError::BadTtl(0))
    ));
    assert!(matches!(
        key.sign(&sub, &["a".into()], 60, NOW + 3600),
        Err(JwtSignError::KeyExpired { .. })
    ));
}

#[test]
fn jwt_exp_is_capped_at_the_key() {
    let (key, bundle) = jwt_setup(KeyType::EcP256);
    let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let token = key.sign(&sub, &["db".to_string()], 10 * 3600, NOW).unwrap();
    let claims = verify_jwt_svid(&token, |_| Some(&bundle), "db", NOW).unwrap();
    assert_eq!(claims.exp, key.not_after());
}

/// A token signed by `key` (an EC P-256 key whose kid is `kid`) with any claims.
fn sign_claims(key: &KeyPair, kid: &str, claims: &crate::spiffe::JwtClaims) -> String {
    use base64::Engine as _;
    let header = crate::spiffe::JwtHeader {
        alg: key.key_type().jwt_algorithm(),
        kid: kid.to_string(),
        typ: Some("JWT".to_string()),
    };
    let input = crate::spiffe::jwt::encode_unsigned(&header, claims).unwrap();
    let sig = key.sign_jws(input.as_bytes()).unwrap();
    format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

#[test]
fn jwt_from_the_future_or_an_expired_key_is_refused() {
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let kid = jwt::new_kid().unwrap();
    let jwt_key = JwtKey::new(kid.clone(), key.clone(), NOW + 7200);
    let mut bundle = Bundle::new(td());
    bundle.jwt_authorities.push(jwt_key.authority());
    let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let lookup = |_: &TrustDomain| Some(&bundle);

    // iat an hour ahead: refused, naming the claim.
    let ahead = jwt_key.sign(&sub, &["db".into()], 600, NOW + 3600).unwrap();
    assert!(matches!(
        verify_jwt_svid(&ahead, lookup, "db", NOW),
        Err(JwtVerifyError::NotYetValid { claim: "iat", .. })
    ));
    // Within the leeway, a slightly fast signer is fine.
    let skewed = jwt_key.sign(&sub, &["db".into()], 600, NOW + 20).unwrap();
    assert!(verify_jwt_svid(&skewed, lookup, "db", NOW).is_ok());
    // ... and a leeway of zero is honoured.
    assert!(matches!(
        verify_jwt_svid_with_leeway(&skewed, lookup, "db", NOW, 0),
        Err(JwtVerifyError::NotYetValid { claim: "iat", .. })
    ));

    // nbf an hour ahead: refused; nbf that is not an integer: refused.
    let mut claims = crate::spiffe::JwtClaims {
        sub: sub.clone(),
        aud: vec!["db".into()],
        exp: NOW + 7000,
        iat: Some(NOW),
        extra: Default::default(),
    };
    claims.extra.insert("nbf".into(), (NOW + 3600).into());
    let nbf_ahead = sign_claims(&key, &kid, &claims);
    assert!(matches!(
        verify_jwt_svid(&nbf_ahead, lookup, "db", NOW),
        Err(JwtVerifyError::NotYetValid { claim: "nbf", .. })
    ));
    assert!(verify_jwt_svid(&nbf_ahead, lookup, "db", NOW + 3600).is_ok());
    claims.extra.insert("nbf".into(), "soon".into());
    let nbf_text = sign_claims(&key, &kid, &claims);
    assert!(matches!(
        verify_jwt_svid(&nbf_text, lookup, "db", NOW),
        Err(JwtVerifyError::BadNotBefore)
    ));

    // A key whose authority has expired vouches for nothing, even a token
    // whose own exp is later (a bundle keeping the key past its expiry).
    let mut stale = Bundle::new(td());
    let mut authority = jwt_key.authority();
    authority.expires_at = Some(NOW - 1);
    stale.jwt_authorities.push(authority);
    let token = jwt_key.sign(&sub, &["db".into()], 600, NOW - 10).unwrap();
    assert!(matches!(
        verify_jwt_svid(&token, |_| Some(&stale), "db", NOW),
        Err(JwtVerifyError::KeyExpired { .. })
    ));
}
