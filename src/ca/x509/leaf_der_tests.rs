//! The hand-written leaf (`leaf_der.rs`) against rcgen's encoding of the
//! same profile (`template::leaf_params`): byte for byte, for every key
//! algorithm on either side, with and without DNS names, on both sides of
//! the UTCTime/GeneralizedTime switch, and under an intermediate.

use std::sync::Arc;

use super::leaf_der::Leaf;
use super::signers::CertifiedKey;
use super::{SvidRequest, X509Authority};
use crate::ca::keys::{KeyPair, KeyType};
use crate::ca::public_key::read_spki;
use crate::ca::{template, tlv};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::testing::openssl;

const NOW: i64 = 1_800_000_000; // 2027
const AFTER_2050: i64 = 2_600_000_000; // 2052

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

/// An RSA key from openssl (ring cannot generate one), as PKCS#8 PEM.
fn rsa_key() -> KeyPair {
    let dir = std::env::temp_dir();
    let args = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ];
    KeyPair::from_pem(&String::from_utf8(openssl(&dir, &args)).unwrap()).unwrap()
}

fn key(kind: &str) -> KeyPair {
    match kind {
        "p256" => KeyPair::generate(KeyType::EcP256).unwrap(),
        "p384" => KeyPair::generate(KeyType::EcP384).unwrap(),
        _ => rsa_key(),
    }
}

/// The TBSCertificate inside a signed certificate.
fn tbs_of(cert: &[u8]) -> Vec<u8> {
    let (header, _) = tlv::header(cert).unwrap();
    tlv::element(&cert[header..]).unwrap().to_vec()
}

/// rcgen's TBS and ours for one leaf of `ca` at `now`, same serial.
fn both(ca: &X509Authority, leaf_key: &KeyPair, dns: &[String], now: i64) -> (Vec<u8>, Vec<u8>) {
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap();
    let spki = leaf_key.public_key_spki();
    let req = SvidRequest {
        spiffe_id: &id,
        public_key_spki: &spki,
        ttl_secs: 3600,
        dns_names: dns,
    };
    let not_after = now + 3600;
    let serial = [0x80, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    let certified = CertifiedKey::from_spki(&spki).unwrap();
    let spki_key = read_spki(&spki).unwrap();
    let (mut params, _) = template::leaf_params(
        &req,
        spki_key.algorithm == crate::ca::public_key::KeyAlgorithm::Rsa,
        spki_key.bits,
        now,
        not_after,
    )
    .unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let theirs = params.signed_by(&certified, &ca.issuer).unwrap();
    let ours = ca
        .leaf
        .tbs(&Leaf {
            serial: &serial,
            not_before: now - template::BACKDATE_SECS,
            not_after,
            subject_cn: dns.first().map(String::as_str),
            key: &spki_key,
            spiffe_id: id.as_str(),
            dns_names: dns,
        })
        .unwrap();
    (tbs_of(theirs.der()), ours)
}

#[test]
fn every_key_pairing_encodes_as_rcgen_does() {
    let dns = ["web.example.org".to_string(), "web".to_string()];
    for ca_kind in ["p256", "p384", "rsa"] {
        let ca_key = Arc::new(key(ca_kind));
        let ca =
            X509Authority::self_signed(&td(), ca_key.clone(), 100 * 365 * 86_400, NOW).unwrap();
        for leaf_kind in ["p256", "p384", "rsa"] {
            let leaf_key = key(leaf_kind);
            for names in [&dns[..0], &dns[..]] {
                for now in [NOW, AFTER_2050] {
                    let (theirs, ours) = both(&ca, &leaf_key, names, now);
                    assert_eq!(
                        hex::encode(&ours),
                        hex::encode(&theirs),
                        "CA {ca_kind}, leaf {leaf_kind}, {} DNS names, at {now}",
                        names.len()
                    );
                }
            }
        }
    }
}

#[test]
fn under_an_intermediate_the_issuer_and_aki_are_the_intermediates() {
    let root_key = Arc::new(key("p256"));
    let root = X509Authority::self_signed(&td(), root_key, 86_400, NOW).unwrap();
    let inter_key = Arc::new(key("p384"));
    let signed = root
        .sign_ca(&td(), &inter_key.public_key_spki(), 3600, NOW)
        .unwrap();
    let inter = X509Authority::from_parts(&td(), signed.cert_der, vec![], inter_key).unwrap();
    let (theirs, ours) = both(&inter, &key("p256"), &[], NOW);
    assert_eq!(hex::encode(ours), hex::encode(theirs));
}

/// The signature over the TBS verifies under the CA's key, for each CA
/// algorithm, and the outer signatureAlgorithm repeats the TBS's.
#[test]
fn every_ca_algorithm_signs_a_leaf_that_verifies() {
    use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
    let leaf_key = key("p256");
    let spki = leaf_key.public_key_spki();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let req = SvidRequest {
        spiffe_id: &id,
        public_key_spki: &spki,
        ttl_secs: 60,
        dns_names: &[],
    };
    for ca_kind in ["p256", "p384", "rsa"] {
        let ca_key = Arc::new(key(ca_kind));
        let alg: &dyn VerificationAlgorithm = match ca_kind {
            "p256" => &signature::ECDSA_P256_SHA256_ASN1,
            "p384" => &signature::ECDSA_P384_SHA384_ASN1,
            _ => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        let ca = X509Authority::self_signed(&td(), ca_key.clone(), 86_400, NOW).unwrap();
        let cert = ca.sign_svid(&req, NOW).unwrap().cert_der;
        let (header, _) = tlv::header(&cert).unwrap();
        let body = &cert[header..];
        let tbs = tlv::element(body).unwrap();
        let outer_alg = tlv::element(&body[tbs.len()..]).unwrap();
        let bits = tlv::element(&body[tbs.len() + outer_alg.len()..]).unwrap();
        let (bits_header, _) = tlv::header(bits).unwrap();
        let sig = &bits[bits_header + 1..]; // after the unused-bits byte
        let tbs_alg = {
            let (h, _) = tlv::header(tbs).unwrap();
            let version = tlv::element(&tbs[h..]).unwrap();
            let serial = tlv::element(&tbs[h + version.len()..]).unwrap();
            tlv::element(&tbs[h + version.len() + serial.len()..]).unwrap()
        };
        assert_eq!(outer_alg, tbs_alg, "{ca_kind}");
        UnparsedPublicKey::new(alg, ca_key.public_key_raw())
            .verify(tbs, sig)
            .unwrap_or_else(|_| panic!("a leaf of the {ca_kind} CA does not verify"));
    }
}

#[test]
fn a_signed_leaf_reads_back_and_non_ascii_names_are_refused() {
    let ca = X509Authority::self_signed(&td(), Arc::new(key("p256")), 86_400, NOW).unwrap();
    let leaf_key = key("p256");
    let spki = leaf_key.public_key_spki();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let req = |dns: &'static [String]| SvidRequest {
        spiffe_id: &id,
        public_key_spki: &spki,
        ttl_secs: 60,
        dns_names: dns,
    };
    let svid = ca.sign_svid(&req(&[]), NOW).unwrap();
    let facts = super::cert_facts(&svid.cert_der).unwrap();
    assert_eq!(facts.serial, svid.serial);
    assert_eq!(facts.uri_sans, [id.to_string()]);

    let bad: &'static [String] = Box::leak(Box::new(["é.example.org".to_string()]));
    let err = ca.sign_svid(&req(bad), NOW).unwrap_err().to_string();
    assert!(
        err.contains("dns name") && err.contains("not ASCII"),
        "{err}"
    );
}
