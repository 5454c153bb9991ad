//! SPKI <-> JWK conversion, byte-exact against ring, rcgen and OpenSSL output.

use super::*;
use crate::spiffe::test_support::{der, rcgen_spki, RSA_2048_SPKI};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
use der::asn1::{Any, BitString};
use der::Encode as _;
use serde_json::{Map, Value};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// OpenSSL P-521 public key whose x coordinate starts with a zero byte.
const P521_SPKI: &str = "MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQAh1kifP99KqlX5DM3nOI2fu5LjXzIDdH3I1jeP2mi2tYxEfQ6FAMDSEmx9Ez6bWO5eAO+4nusK/FdIVG46VUQFt8ADRN04yzBQDABdCvK4oRohpAi4RDPCB7UFTuZOJ/AqYT1L/p4T40RBmEuVOf4i5zyJjfSmz5oFkWdcABAW7tzxNw=";
/// OpenSSL Ed25519 public key: a JWK `OKP` key we do not support.
const ED25519_SPKI: &str = "MCowBQYDK2VwAyEAzh5V1G2ECNPJRA7wrb3tPZkYeCoZTVdFn16GJSOK4FE=";
/// OpenSSL 1024-bit RSA key with e = 3.
const RSA_E3_SPKI: &str = "MIGdMA0GCSqGSIb3DQEBAQUAA4GLADCBhwKBgQDUJT2ev8mU2bVTVSmToNqWUKnFiOYwTfzWJ44GIEStf0kRHk+w7UHYPGoK0dn/qcBth3ncs4PzRhRiKnBLBjuP9ZuDk9K5KvgaVA7nlFHtzO+YLCQ8upyXE/MgxI3hte9sbIMVrtN5JL4oog16T152T0+70k+qyRk0CnYhhhD8owIBAw==";

fn members(params: &JwkKeyParams) -> Map<String, Value> {
    match serde_json::to_value(params.to_jwk_json().unwrap()).unwrap() {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn round_trip(spki: &[u8]) -> JwkKeyParams {
    let params = JwkKeyParams::from_spki_der(spki).unwrap();
    assert_eq!(
        params.to_spki_der().unwrap(),
        spki,
        "SPKI must round-trip byte for byte"
    );
    let back = JwkKeyParams::from_jwk_members(&members(&params)).unwrap();
    assert_eq!(back, params, "JWK members must round-trip");
    params
}

#[test]
fn ec_p256_and_p384_from_rcgen_round_trip() {
    for (alg, crv) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, EcCurve::P256),
        (&rcgen::PKCS_ECDSA_P384_SHA384, EcCurve::P384),
    ] {
        let params = round_trip(&rcgen_spki(alg));
        let JwkKeyParams::Ec { crv: got, x, y } = &params else {
            panic!("not EC")
        };
        assert_eq!(*got, crv);
        assert_eq!(x.len(), crv.coordinate_len());
        assert_eq!(y.len(), crv.coordinate_len());
        let m = members(&params);
        assert_eq!(m["kty"], "EC");
        assert_eq!(m["crv"], crv.jwk_name());
        let x_b64 = m["x"].as_str().unwrap();
        assert!(!x_b64.contains('=') && !x_b64.contains('+') && !x_b64.contains('/'));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(x_b64).unwrap().len(),
            crv.coordinate_len()
        );
        assert!(m.get("n").is_none() && m.get("use").is_none() && m.get("kid").is_none());
    }
}

#[test]
fn ec_spki_built_from_ring_point_matches_rcgen() {
    use rcgen::PublicKeyData as _;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = key.public_key().as_ref();
    assert_eq!(point.len(), 65);
    let params = JwkKeyParams::Ec {
        crv: EcCurve::P256,
        x: point[1..33].to_vec(),
        y: point[33..].to_vec(),
    };
    let rcgen_key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
    assert_eq!(
        params.to_spki_der().unwrap(),
        rcgen_key.subject_public_key_info()
    );
}

#[test]
fn p521_keeps_full_66_byte_coordinates() {
    let params = round_trip(&der(P521_SPKI));
    let JwkKeyParams::Ec { crv, x, .. } = &params else {
        panic!("not EC")
    };
    assert_eq!(*crv, EcCurve::P521);
    assert_eq!(x.len(), 66);
    assert_eq!(x[0], 0, "fixture's x starts with a zero byte");
    let m = members(&params);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(m["x"].as_str().unwrap())
            .unwrap()
            .len(),
        66
    );
}

#[test]
fn rsa_round_trips_with_minimal_n_and_e() {
    let params = round_trip(&der(RSA_2048_SPKI));
    let JwkKeyParams::Rsa { n, e } = &params else {
        panic!("not RSA")
    };
    assert_eq!(n.len(), 256, "leading zero of the DER INTEGER is stripped");
    assert_eq!(e, &[1, 0, 1]);
    let m = members(&params);
    assert_eq!(m["kty"], "RSA");
    assert_eq!(m["e"], "AQAB");
    assert!(m.get("crv").is_none());
    let small = round_trip(&der(RSA_E3_SPKI));
    assert!(matches!(small, JwkKeyParams::Rsa { ref e, .. } if e == &[3]));
}

#[test]
fn rsa_leading_zeros_in_jwk_are_stripped() {
    let params = JwkKeyParams::from_spki_der(&der(RSA_2048_SPKI)).unwrap();
    let mut m = members(&params);
    let JwkKeyParams::Rsa { n, .. } = &params else {
        panic!()
    };
    let mut padded = vec![0, 0];
    padded.extend_from_slice(n);
    m.insert("n".into(), Value::String(URL_SAFE_NO_PAD.encode(&padded)));
    assert_eq!(JwkKeyParams::from_jwk_members(&m).unwrap(), params);
}

#[test]
fn unsupported_spki_rejected() {
    let err = JwkKeyParams::from_spki_der(&der(ED25519_SPKI)).unwrap_err();
    assert!(
        matches!(err, JwkError::UnsupportedAlgorithm { ref oid } if oid == "1.3.101.112"),
        "{err}"
    );
    assert!(matches!(
        JwkKeyParams::from_spki_der(b"not der"),
        Err(JwkError::Der(_))
    ));
    assert!(matches!(
        JwkKeyParams::from_spki_der(&[]),
        Err(JwkError::Der(_))
    ));
    let mut trailing = der(RSA_2048_SPKI);
    trailing.push(0);
    assert!(JwkKeyParams::from_spki_der(&trailing).is_err());
}

#[test]
fn compressed_or_truncated_ec_point_rejected() {
    let params = JwkKeyParams::from_spki_der(&rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    let JwkKeyParams::Ec { x, .. } = &params else {
        panic!()
    };
    let mut point = vec![0x02];
    point.extend_from_slice(x);
    let info = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&SECP_256_R_1).unwrap()),
        },
        subject_public_key: BitString::from_bytes(&point).unwrap(),
    };
    let err = JwkKeyParams::from_spki_der(&info.to_der().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            JwkError::BadEcPoint {
                expected: 65,
                got: 33,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn jwk_member_errors_name_the_member() {
    let params = JwkKeyParams::from_spki_der(&rcgen_spki(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    let good = members(&params);

    let mut m = good.clone();
    m.insert("x".into(), Value::String(URL_SAFE_NO_PAD.encode([1u8; 31])));
    let err = JwkKeyParams::from_jwk_members(&m).unwrap_err();
    assert!(
        matches!(
            err,
            JwkError::CoordinateLength {
                member: "x",
                expected: 32,
                got: 31,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("`x`"));

    let mut m = good.clone();
    m.insert("y".into(), Value::String("not base64!".into()));
    let err = JwkKeyParams::from_jwk_members(&m).unwrap_err();
    assert!(matches!(err, JwkError::Base64 { member: "y", .. }), "{err}");

    let mut m = good.clone();
    let y = m["y"].as_str().unwrap().to_owned();
    m.insert("y".into(), Value::String(format!("{y}=")));
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::Base64 { member: "y", .. })
    ));

    let mut m = good.clone();
    m.remove("crv");
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::MissingMember { member: "crv" })
    ));

    let mut m = good.clone();
    m.insert("crv".into(), Value::String("secp256k1".into()));
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::UnsupportedCrv { .. })
    ));

    let mut m = good.clone();
    m.insert("kty".into(), Value::String("OKP".into()));
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::UnsupportedKty { .. })
    ));

    let mut m = good;
    m.insert("x".into(), Value::from(5));
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::NotAString { member: "x" })
    ));

    let rsa = members(&JwkKeyParams::from_spki_der(&der(RSA_2048_SPKI)).unwrap());
    let mut m = rsa.clone();
    m.insert("e".into(), Value::String("AA".into()));
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::ZeroRsaComponent { member: "e" })
    ));
    let mut m = rsa;
    m.remove("n");
    assert!(matches!(
        JwkKeyParams::from_jwk_members(&m),
        Err(JwkError::MissingMember { member: "n" })
    ));
}

#[test]
fn hand_built_params_are_checked_on_output() {
    let bad = JwkKeyParams::Ec {
        crv: EcCurve::P256,
        x: vec![1; 33],
        y: vec![1; 32],
    };
    assert!(matches!(
        bad.to_spki_der(),
        Err(JwkError::CoordinateLength { member: "x", .. })
    ));
    assert!(bad.to_jwk_json().is_err());
    let zero = JwkKeyParams::Rsa {
        n: vec![0, 0],
        e: vec![1, 0, 1],
    };
    assert!(matches!(
        zero.to_spki_der(),
        Err(JwkError::ZeroRsaComponent { member: "n" })
    ));
    // Short coordinates are widened, as JWK requires.
    let short = JwkKeyParams::Ec {
        crv: EcCurve::P256,
        x: vec![7; 31],
        y: vec![9; 32],
    };
    let JwkKeyParams::Ec { x, .. } =
        JwkKeyParams::from_spki_der(&short.to_spki_der().unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(x[0], 0);
    assert_eq!(x.len(), 32);
}
