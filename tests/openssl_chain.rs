//! Chains Herald signs are accepted by OpenSSL, an independent verifier:
//! from a CSR that OpenSSL itself made, from the `herald x509 mint` command,
//! and through an intermediate CA.

mod harness;

use std::sync::Arc;

use harness::bin::{now, run_ok};
use harness::openssl::{openssl, verify_chain};
use herald::ca::keys::der_to_pem;
use herald::ca::{verify_csr, KeyPair, KeyType, SignedCert, SvidRequest, X509Authority};
use herald::spiffe::{SpiffeId, TrustDomain};

#[test]
fn openssl_csr_signed_by_herald_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for (curve, name) in [("P-256", "p256"), ("P-384", "p384")] {
        let (ok, text) = openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-nodes",
                "-subj",
                "/CN=ignored",
                "-keyout",
                &format!("{name}.key"),
                "-outform",
                "DER",
                "-out",
                &format!("{name}.csr"),
            ],
        );
        assert!(ok, "openssl req: {text}");
        let csr = std::fs::read(dir.path().join(format!("{name}.csr"))).unwrap();
        let verified = verify_csr(&csr).unwrap();

        let td = TrustDomain::new("example.org").unwrap();
        let ca = self_signed(&td, KeyType::EcP256, 3600);
        // The ID comes from us, not from the CSR (whose subject says "ignored").
        let id = SpiffeId::parse("spiffe://example.org/from-csr").unwrap();
        let svid = ca
            .sign_svid(
                &SvidRequest {
                    spiffe_id: &id,
                    public_key_spki: &verified.public_key_spki,
                    ttl_secs: 600,
                    dns_names: &[],
                },
                now(),
            )
            .unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            der_to_pem(ca.cert_der(), "CERTIFICATE"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("leaf.pem"),
            der_to_pem(&svid.cert_der, "CERTIFICATE"),
        )
        .unwrap();
        let (ok, text) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "sslclient",
                "-CAfile",
                "ca.pem",
                "leaf.pem",
            ],
        );
        assert!(
            ok && text.contains("leaf.pem: OK"),
            "openssl verify: {text}"
        );
        let (_, text) = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
        assert!(text.contains("URI:spiffe://example.org/from-csr"), "{text}");
        assert!(
            !text.contains("ignored"),
            "CSR subject leaked into the SVID: {text}"
        );
        // The certified key is the CSR's: the cert and the OpenSSL key agree.
        let (_, a) = openssl(
            dir.path(),
            &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        );
        let (_, b) = openssl(
            dir.path(),
            &["pkey", "-in", &format!("{name}.key"), "-pubout"],
        );
        assert_eq!(a, b);
    }
}

/// A self-signed CA with a fresh key of `kind`.
fn self_signed(td: &TrustDomain, kind: KeyType, ttl_secs: i64) -> X509Authority {
    let key = Arc::new(KeyPair::generate(kind).unwrap());
    X509Authority::self_signed(td, key, ttl_secs, now()).unwrap()
}

/// A 60 s SVID for `id` over a fresh P-256 key, signed by `ca`.
fn svid_for(ca: &X509Authority, id: &str) -> SignedCert {
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spki = key.public_key_spki();
    let id = SpiffeId::parse(id).unwrap();
    ca.sign_svid(
        &SvidRequest {
            spiffe_id: &id,
            public_key_spki: &spki,
            ttl_secs: 60,
            dns_names: &[],
        },
        now(),
    )
    .unwrap()
}

#[test]
fn a_wrong_ca_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let ca = self_signed(&td, KeyType::EcP256, 3600);
    let other = self_signed(&td, KeyType::EcP256, 3600);
    let svid = svid_for(&ca, "spiffe://example.org/x");
    std::fs::write(
        dir.path().join("other.pem"),
        der_to_pem(other.cert_der(), "CERTIFICATE"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        der_to_pem(&svid.cert_der, "CERTIFICATE"),
    )
    .unwrap();
    let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "other.pem", "leaf.pem"]);
    assert!(!ok, "verified against the wrong CA: {text}");
}

#[test]
fn chain_through_an_intermediate_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let root = self_signed(&td, KeyType::EcP384, 7200);
    let ikey = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let signed = root
        .sign_ca(&td, &ikey.public_key_spki(), 3600, now())
        .unwrap();
    let inter = X509Authority::from_parts(&td, signed.cert_der, vec![], ikey).unwrap();
    let svid = svid_for(&inter, "spiffe://example.org/deep");
    assert_eq!(svid.chain.len(), 2);
    std::fs::write(
        dir.path().join("root.pem"),
        der_to_pem(root.cert_der(), "CERTIFICATE"),
    )
    .unwrap();
    let (ok, text) = verify_chain(dir.path(), &svid.chain, "root.pem");
    assert!(ok, "openssl verify: {text}");
}

#[test]
fn cli_minted_svid_verifies_and_key_matches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    run_ok(&[
        "x509",
        "mint",
        "--data-dir",
        data.to_str().unwrap(),
        "--spiffe-id",
        "spiffe://example.org/cli",
        "--dns-name",
        "cli.example.org",
        "--write",
        out.to_str().unwrap(),
    ]);
    let (ok, text) = openssl(
        &out,
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "bundle.pem",
            "svid.pem",
        ],
    );
    assert!(ok, "openssl verify: {text}");
    let (_, a) = openssl(&out, &["x509", "-in", "svid.pem", "-noout", "-pubkey"]);
    let (_, b) = openssl(&out, &["pkey", "-in", "svid.key", "-pubout"]);
    assert_eq!(a, b, "svid.key is not the key of svid.pem");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out.join("svid.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Every key file under the data dir is 0600 too.
    for entry in std::fs::read_dir(data.join("keys")).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
