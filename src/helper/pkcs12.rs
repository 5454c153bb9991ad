//! The optional PKCS#12 file: the SVID's key and chain in the one container
//! some software reads (Java keystores, programs born on Windows). It is
//! made from the same PEM text as the other files of its generation, so it
//! always matches them.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};

use crate::ca::pem::{pem_blocks, pem_to_der, PemError};

/// The alias of the key entry (Java's keytool lists it by this name).
const ALIAS: &str = "svid";

/// Why the PKCS#12 file could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    /// The PEM the agent's update became could not be read back.
    #[error("the SVID's PEM cannot be read back")]
    Pem(#[source] PemError),
    /// The chain holds no certificate.
    #[error("the SVID has no certificate")]
    NoCertificate,
    /// The keystore library refused the key, a certificate or the encoding.
    #[error("cannot encode the PKCS#12 file")]
    Encode(#[source] p12_keystore::error::Error),
}

/// Encodes `key_pem` (PKCS#8) and `chain_pem` (leaf first) as PKCS#12,
/// encrypted and MACed with `password` (PBES2/AES-256, HMAC-SHA-256: what
/// OpenSSL 3 and current JDKs read and write by default).
pub fn encode(chain_pem: &str, key_pem: &str, password: &str) -> Result<Vec<u8>, Pkcs12Error> {
    let key = pem_to_der(key_pem, "PRIVATE KEY").map_err(Pkcs12Error::Pem)?;
    let certs = pem_blocks(chain_pem, "CERTIFICATE")
        .map_err(Pkcs12Error::Pem)?
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Pkcs12Error::Encode)?;
    if certs.is_empty() {
        return Err(Pkcs12Error::NoCertificate);
    }
    let key = PrivateKey::from_der(&key).map_err(Pkcs12Error::Encode)?;
    let mut store = KeyStore::new();
    store.add_entry(
        ALIAS,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(ALIAS, key, certs)),
    );
    store.writer(password).write().map_err(Pkcs12Error::Encode)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    const ID: &str = "spiffe://example.org/java";

    /// A leaf with a SPIFFE URI SAN under an intermediate: PEM chain (leaf
    /// first) and PKCS#8 key, as the helper writes them.
    pub(crate) fn svid() -> (String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(ID.try_into().unwrap())];
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        (
            format!("{}{}", leaf.pem(), ca_cert.pem()),
            key.serialize_pem(),
        )
    }

    fn openssl(args: &[&str], input: &std::path::Path) -> String {
        let out = Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(input)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn openssl_reads_the_key_and_chain_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (chain, key) = svid();
        for password in ["", "s3cret pass"] {
            let p12 = tmp.path().join("svid.p12");
            std::fs::write(&p12, encode(&chain, &key, password).unwrap()).unwrap();
            let pass = format!("pass:{password}");
            let pem = openssl(&["pkcs12", "-nodes", "-passin", &pass], &p12);
            let out = tmp.path().join("out.pem");
            std::fs::write(&out, &pem).unwrap();
            assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");
            // The first certificate openssl prints is the key's: the leaf.
            let leaf = openssl(&["x509", "-noout", "-ext", "subjectAltName"], &out);
            assert!(leaf.contains(&format!("URI:{ID}")), "{leaf}");
            let cert_pub = openssl(&["x509", "-noout", "-pubkey"], &out);
            let key_pub = openssl(&["pkey", "-pubout"], &out);
            assert_eq!(cert_pub, key_pub, "the key does not match the leaf");
            let wrong = Command::new("openssl")
                .args(["pkcs12", "-nodes", "-passin", "pass:wrong", "-in"])
                .arg(&p12)
                .output()
                .unwrap();
            assert!(!wrong.status.success(), "a wrong password was accepted");
        }
    }

    #[test]
    fn no_certificate_is_an_error() {
        let (_, key) = svid();
        assert!(matches!(
            encode("", &key, ""),
            Err(Pkcs12Error::NoCertificate)
        ));
    }
}
