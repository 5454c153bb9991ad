//! SPIFFE bundle JSON: round trips and every rejection the spec calls for.

use super::*;
use crate::spiffe::jwk::JwkKeyParams;
use crate::spiffe::test_support::{der, rcgen_spki, RSA_2048_SPKI};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn ca_cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().der().to_vec()
}

fn jwt_key(kid: &str, spki: Vec<u8>) -> JwtAuthority {
    JwtAuthority {
        key_id: kid.into(),
        public_key: spki,
        expires_at: None,
    }
}

fn full_bundle() -> Bundle {
    let mut b = Bundle::new(td());
    b.x509_authorities
        .push(ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256));
    b.x509_authorities
        .push(ca_cert(&rcgen::PKCS_ECDSA_P384_SHA384));
    b.jwt_authorities
        .push(jwt_key("p256", rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)));
    b.jwt_authorities
        .push(jwt_key("p384", rcgen_spki(&rcgen::PKCS_ECDSA_P384_SHA384)));
    b.jwt_authorities.push(jwt_key("rsa", der(RSA_2048_SPKI)));
    b.sequence = 12;
    b.refresh_hint = Some(300);
    b
}

fn parse(json: &str) -> Result<Bundle, BundleError> {
    Bundle::from_spiffe_json(td(), json.as_bytes())
}

fn doc(bundle: &Bundle) -> Value {
    serde_json::from_str(&bundle.to_spiffe_json().unwrap()).unwrap()
}

/// Parses `json` and asserts that it is refused with an error matching
/// `pattern`; a failure names the input and what came back. Yields the
/// error for further checks.
macro_rules! assert_rejects {
    ($json:expr, $pattern:pat $(if $guard:expr)?) => {{
        let json: &str = $json;
        match parse(json) {
            Ok(bundle) => panic!("accepted {json}: {bundle:?}"),
            Err(err) => {
                assert!(matches!(err, $pattern $(if $guard)?), "{json}: {err}");
                err
            }
        }
    }};
}

#[test]
fn round_trip_ec_rsa_and_x509() {
    let bundle = full_bundle();
    let json = bundle.to_spiffe_json().unwrap();
    let back = Bundle::from_spiffe_json(td(), json.as_bytes()).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(
        back.jwt_authority("rsa").unwrap().public_key,
        der(RSA_2048_SPKI)
    );
    assert!(back.jwt_authority("nope").is_none());
}

#[test]
fn json_shape_matches_spire() {
    let bundle = full_bundle();
    let json = bundle.to_spiffe_json().unwrap();
    assert!(
        json.starts_with(r#"{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"#),
        "{json}"
    );
    let v = doc(&bundle);
    assert_eq!(v["spiffe_sequence"], 12);
    assert_eq!(v["spiffe_refresh_hint"], 300);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 5);
    let x509 = &keys[0];
    assert!(x509.get("kid").is_none());
    let x5c = x509["x5c"].as_array().unwrap();
    assert_eq!(x5c.len(), 1);
    assert_eq!(
        STANDARD.decode(x5c[0].as_str().unwrap()).unwrap(),
        bundle.x509_authorities[0]
    );
    assert_eq!(keys[1]["crv"], "P-384");
    assert_eq!(keys[2]["use"], "jwt-svid");
    assert_eq!(keys[2]["kid"], "p256");
    assert!(keys[2].get("x5c").is_none());
    assert_eq!(keys[4]["kty"], "RSA");
    assert_eq!(keys[4]["e"], "AQAB");
}

#[test]
fn zero_sequence_and_hint_omitted() {
    let mut bundle = Bundle::new(td());
    assert_eq!(bundle.to_spiffe_json().unwrap(), r#"{"keys":[]}"#);
    bundle.refresh_hint = Some(0);
    assert_eq!(bundle.to_spiffe_json().unwrap(), r#"{"keys":[]}"#);
    let back = parse(r#"{"keys":[]}"#).unwrap();
    assert_eq!(back, Bundle::new(td()));
    let back =
        parse(r#"{"keys":[],"spiffe_sequence":18446744073709551615,"spiffe_refresh_hint":0}"#)
            .unwrap();
    assert_eq!(back.sequence, u64::MAX);
    assert_eq!(back.refresh_hint, Some(0));
}

#[test]
fn jwt_jwks_has_jwt_keys_only() {
    let bundle = full_bundle();
    let v: Value = serde_json::from_str(&bundle.jwt_jwks_json().unwrap()).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only `keys`: {v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for key in keys {
        assert!(key.get("use").is_none() && key.get("x5c").is_none());
        assert!(key["kid"].is_string() && key["kty"].is_string());
    }
    assert_eq!(Bundle::new(td()).jwt_jwks_json().unwrap(), r#"{"keys":[]}"#);
}

#[test]
fn x509_concat() {
    let bundle = full_bundle();
    let mut want = bundle.x509_authorities[0].clone();
    want.extend_from_slice(&bundle.x509_authorities[1]);
    assert_eq!(bundle.x509_authorities_concat(), want);
    assert!(Bundle::new(td()).x509_authorities_concat().is_empty());
}

fn with_key(key: Value) -> String {
    serde_json::json!({ "keys": [key] }).to_string()
}

/// The JWK of a bundle's only X.509 authority, a fresh P-256 CA.
fn p256_x509_key() -> Value {
    let bundle = Bundle {
        x509_authorities: vec![ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256)],
        ..Bundle::new(td())
    };
    doc(&bundle)["keys"][0].clone()
}

#[test]
fn x5c_key_must_match_params() {
    let mut key = p256_x509_key();
    let other = JwkKeyParams::from_spki_der(&rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    key["x"] = Value::String(other.to_jwk_json().unwrap().x.unwrap());
    let err = assert_rejects!(&with_key(key), BundleError::X5cKeyMismatch { index: 0 });
    assert!(err.to_string().contains("keys[0]"));
}

#[test]
fn x5c_must_hold_exactly_one_cert() {
    let mut key = p256_x509_key();
    let cert = key["x5c"][0].clone();
    key["x5c"] = Value::Array(vec![cert.clone(), cert]);
    assert_rejects!(
        &with_key(key.clone()),
        BundleError::X5cCount { index: 0, count: 2 }
    );
    key["x5c"] = Value::Array(vec![]);
    assert_rejects!(
        &with_key(key.clone()),
        BundleError::X5cCount { count: 0, .. }
    );
    key.as_object_mut().unwrap().remove("x5c");
    assert_rejects!(&with_key(key.clone()), BundleError::MissingX5c { index: 0 });
    key["x5c"] = serde_json::json!([42]);
    assert_rejects!(
        &with_key(key.clone()),
        BundleError::X5cNotString { index: 0 }
    );
    key["x5c"] = serde_json::json!(["!!!"]);
    assert_rejects!(
        &with_key(key.clone()),
        BundleError::X5cBase64 { index: 0, .. }
    );
    key["x5c"] = serde_json::json!(["AAAA"]);
    assert_rejects!(&with_key(key), BundleError::X5cCertificate { index: 0, .. });
}

#[test]
fn missing_or_malformed_keys_rejected() {
    assert_rejects!("{}", BundleError::MissingKeys);
    assert_rejects!(r#"{"spiffe_sequence":1}"#, BundleError::MissingKeys);
    assert_rejects!(r#"{"keys":{}}"#, BundleError::KeysNotArray);
    assert_rejects!(r#"{"keys":[1]}"#, BundleError::KeyNotObject { index: 0 });
    assert_rejects!("[]", BundleError::NotAnObject);
    assert_rejects!("not json", BundleError::Json(_));
    assert_rejects!("", BundleError::Json(_));
    assert_rejects!(r#"{"keys":[],"keys":[]}"#, BundleError::Json(_));
}

fn jwt_json(kid: &str) -> Value {
    let bundle = Bundle {
        jwt_authorities: vec![jwt_key(kid, rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256))],
        ..Bundle::new(td())
    };
    doc(&bundle)["keys"][0].clone()
}

#[test]
fn jwt_key_needs_kid() {
    let mut key = jwt_json("k");
    key.as_object_mut().unwrap().remove("kid");
    assert_rejects!(&with_key(key.clone()), BundleError::MissingKid { index: 0 });
    key["kid"] = Value::String(String::new());
    assert_rejects!(&with_key(key.clone()), BundleError::MissingKid { index: 0 });
    key["kid"] = Value::from(7);
    assert_rejects!(&with_key(key), BundleError::MissingKid { index: 0 });
}

#[test]
fn bad_key_params_name_index_and_member() {
    let mut key = jwt_json("k");
    key["x"] = Value::String("***".into());
    let json = serde_json::json!({ "keys": [jwt_json("a"), key] }).to_string();
    let err = assert_rejects!(
        &json,
        BundleError::KeyParams {
            index: 1,
            source: JwkError::Base64 { member: "x", .. },
            ..
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("keys[1]") && msg.contains("`x`"), "{msg}");

    let mut key = jwt_json("k");
    key["y"] = Value::String(URL_SAFE_NO_PAD_ENGINE.encode([5u8; 31]));
    assert_rejects!(
        &with_key(key),
        BundleError::KeyParams {
            index: 0,
            source: JwkError::CoordinateLength {
                member: "y",
                got: 31,
                ..
            },
            ..
        }
    );

    let mut key = jwt_json("k");
    key.as_object_mut().unwrap().remove("kty");
    assert_rejects!(&with_key(key), BundleError::KeyParams { index: 0, .. });
}

const URL_SAFE_NO_PAD_ENGINE: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[test]
fn duplicate_kid_rejected() {
    let json =
        serde_json::json!({ "keys": [jwt_json("same"), jwt_json("other"), jwt_json("same")] })
            .to_string();
    assert_rejects!(
        &json,
        BundleError::DuplicateKid {
            index: 2,
            first: 0,
            ..
        }
    );

    let mut bundle = Bundle::new(td());
    bundle
        .jwt_authorities
        .push(jwt_key("same", rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)));
    bundle
        .jwt_authorities
        .push(jwt_key("same", rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)));
    assert!(matches!(
        bundle.to_spiffe_json(),
        Err(BundleError::BadAuthorityKid { index: 1 })
    ));
    bundle.jwt_authorities[1].key_id.clear();
    assert!(matches!(
        bundle.jwt_jwks_json(),
        Err(BundleError::BadAuthorityKid { index: 1 })
    ));
}

#[test]
fn sequence_and_hint_must_be_u64() {
    for name in ["spiffe_sequence", "spiffe_refresh_hint"] {
        for bad in ["-1", "1.5", "1e3", "\"1\"", "null", "18446744073709551616"] {
            let json = format!(r#"{{"keys":[],"{name}":{bad}}}"#);
            assert_rejects!(&json, BundleError::BadInteger { member } if member == name);
        }
    }
}

#[test]
fn unknown_use_and_kty_ignored() {
    let mut unknown_use = jwt_json("a");
    unknown_use["use"] = Value::String("wit-svid".into());
    let mut no_use = jwt_json("b");
    no_use.as_object_mut().unwrap().remove("use");
    let mut upper_use = jwt_json("c");
    upper_use["use"] = Value::String("JWT-SVID".into());
    let okp = serde_json::json!({"use": "jwt-svid", "kty": "OKP", "kid": "d", "crv": "Ed25519", "x": "?"});
    let garbage = serde_json::json!({"use": "sig", "x5c": 5});
    let json = serde_json::json!({ "keys": [unknown_use, no_use, upper_use, okp, garbage, jwt_json("e")] }).to_string();
    let bundle = parse(&json).unwrap();
    assert_eq!(bundle.jwt_authorities.len(), 1);
    assert_eq!(bundle.jwt_authorities[0].key_id, "e");
    assert!(bundle.x509_authorities.is_empty());
}

#[test]
fn x509_authority_that_is_not_a_cert_fails_to_serialise() {
    let mut bundle = Bundle::new(td());
    bundle.x509_authorities.push(vec![1, 2, 3]);
    assert!(matches!(
        bundle.to_spiffe_json(),
        Err(BundleError::AuthorityCertificate { index: 0, .. })
    ));
    let mut bundle = Bundle::new(td());
    bundle.jwt_authorities.push(jwt_key("k", vec![0x30, 0]));
    assert!(matches!(
        bundle.jwt_jwks_json(),
        Err(BundleError::JwtAuthorityKey { .. })
    ));
}
