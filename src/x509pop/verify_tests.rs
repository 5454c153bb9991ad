use rcgen::KeyPair;

use super::*;
use crate::node::x509pop::MachineFiles;
use crate::x509pop::challenge::CHALLENGE_TTL_SECS;
use crate::x509pop::test_pki::{Machine, TestCa, TestPki as Pki};
use crate::x509pop::{fingerprint, ChallengeKey, PathTemplate};

const NOW: i64 = 1_900_000_000;

fn verifier(root: &TestCa) -> X509PopVerifier {
    X509PopVerifier::new(
        vec![root.der()],
        PathTemplate::default(),
        TrustDomain::new("example.org").unwrap(),
        ChallengeKey::generate().unwrap(),
    )
}

fn chain_pem(machine: &Machine, inter: &TestCa) -> String {
    [
        crate::ca::pem::der_to_pem(&machine.leaf, "CERTIFICATE"),
        inter.pem(),
    ]
    .concat()
}

/// The agent's side, through the same files and code the agent uses.
fn prove(chain: &str, key_pem: &str, challenge: Vec<u8>, csr: &[u8]) -> Proof_ {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("machine.pem");
    let key = dir.path().join("machine.key");
    std::fs::write(&cert, chain).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let files = MachineFiles {
        certificate_path: cert,
        private_key_path: key,
        intermediates_path: None,
        check_interval: crate::node::x509pop::DEFAULT_CHECK_INTERVAL,
    };
    files.proof(challenge, csr).unwrap()
}

type Proof_ = crate::proto::node::X509PopProof;

/// A proof by the machine's own key over a fresh challenge and `b"csr"`.
fn good_proof(pki: &Pki, v: &X509PopVerifier) -> Proof_ {
    let (challenge, _) = v.challenge(NOW).unwrap();
    let chain = chain_pem(&pki.machine, &pki.inter);
    prove(&chain, &pki.machine.key_pem, challenge, b"csr")
}

fn check(v: &X509PopVerifier, p: &Proof_, csr: &[u8], now: i64) -> Result<Verified, VerifyError> {
    v.verify(
        &Proof {
            chain: &p.chain,
            challenge: &p.challenge,
            signature: &p.signature,
            csr,
        },
        now,
    )
}

#[test]
fn a_good_proof_gives_the_agent_id_and_selectors() {
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let v = verifier(&pki.root);
    let p = good_proof(&pki, &v);
    let got = check(&v, &p, b"csr", NOW).unwrap();
    let fp = fingerprint(&pki.machine.leaf);
    assert_eq!(
        got.agent_id.to_string(),
        format!("spiffe://example.org/herald/agent/x509pop/{fp}")
    );
    let sel: Vec<String> = got.selectors.iter().map(|s| s.to_string()).collect();
    for want in [
        "x509pop:subject:cn:db-1".to_string(),
        "x509pop:san:dns:db-1.example.net".into(),
        "x509pop:san:uri:urn:machine:test".into(),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&pki.inter.der())),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&pki.root.der())),
        format!("x509pop:serialnumber:{}", got.leaf.serial_number),
    ] {
        assert!(sel.contains(&want), "{want} not in {sel:?}");
    }
    assert_eq!(sel.len(), 6, "{sel:?}");
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let v = verifier(&pki.root);
    let (challenge, _) = v.challenge(NOW).unwrap();
    let other = KeyPair::generate().unwrap().serialize_pem();
    let p = prove(
        &chain_pem(&pki.machine, &pki.inter),
        &other,
        challenge,
        b"csr",
    );
    assert!(matches!(
        check(&v, &p, b"csr", NOW),
        Err(VerifyError::Signature)
    ));
}

#[test]
fn a_proof_for_another_csr_or_challenge_is_refused() {
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let v = verifier(&pki.root);
    let p = good_proof(&pki, &v);
    assert!(matches!(
        check(&v, &p, b"other csr", NOW),
        Err(VerifyError::Signature)
    ));
    // A fresh valid challenge swapped in: the signature no longer matches.
    let mut swapped = p.clone();
    swapped.challenge = v.challenge(NOW).unwrap().0;
    assert!(matches!(
        check(&v, &swapped, b"csr", NOW),
        Err(VerifyError::Signature)
    ));
}

#[test]
fn an_expired_or_foreign_challenge_is_refused() {
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let v = verifier(&pki.root);
    let p = good_proof(&pki, &v);
    let err = check(&v, &p, b"csr", NOW + CHALLENGE_TTL_SECS + 1).unwrap_err();
    assert!(
        matches!(err, VerifyError::Challenge(ChallengeError::Expired(_))),
        "{err}"
    );
    let other = verifier(&pki.root);
    let err = check(&other, &p, b"csr", NOW).unwrap_err();
    assert!(
        matches!(err, VerifyError::Challenge(ChallengeError::BadMac)),
        "{err}"
    );
}

#[test]
fn a_chain_to_another_ca_is_refused() {
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let v = verifier(&TestCa::root("another root").unwrap());
    let p = good_proof(&pki, &v);
    let err = check(&v, &p, b"csr", NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Chain(_)), "{err}");
    assert!(err
        .to_string()
        .contains("does not chain to the server's ca_bundle_path"));
    // Without the intermediate, the leaf does not chain either.
    let v = verifier(&pki.root);
    let mut p = good_proof(&pki, &v);
    p.chain.truncate(1);
    assert!(matches!(
        check(&v, &p, b"csr", NOW),
        Err(VerifyError::Chain(_))
    ));
}

#[test]
fn an_ed25519_and_a_p384_machine_key_prove_possession() {
    let root = TestCa::root("root").unwrap();
    let inter = root.intermediate("inter").unwrap();
    let v = verifier(&root);
    for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
        let machine = inter
            .machine("m", "m.example.net", KeyPair::generate_for(alg).unwrap())
            .unwrap();
        let (challenge, _) = v.challenge(NOW).unwrap();
        let p = prove(
            &chain_pem(&machine, &inter),
            &machine.key_pem,
            challenge,
            b"csr",
        );
        check(&v, &p, b"csr", NOW).unwrap();
    }
}
