//! Private keys in the PEM forms machines keep them in: PKCS#8 (`PRIVATE
//! KEY`), and the older PKCS#1 (`RSA PRIVATE KEY`, RFC 8017) and SEC1 (`EC
//! PRIVATE KEY`, RFC 5915) that OpenSSL's `genrsa -traditional` and
//! `ecparam -genkey`, and many existing PKIs, still write. ring reads PKCS#8
//! only, so the other two are wrapped into a PKCS#8 `PrivateKeyInfo`
//! (RFC 5208) here; the key itself is not changed.
//!
//! Errors never carry key material.

use der::asn1::{ContextSpecific, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Reader as _, SliceReader, TagNumber};

use super::pem::{pem_blocks, PemError};
use super::tlv;

/// rsaEncryption (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Why a PEM document gives no usable private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyPemError {
    /// No block with a private key label.
    #[error("no PEM block labelled PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY")]
    Missing,
    /// The key is encrypted; Herald has no passphrase to open it.
    #[error("the private key is encrypted; store it unencrypted, readable only by the agent (mode 0600)")]
    Encrypted,
    /// The block does not decode.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A SEC1 or PKCS#1 key is not valid DER.
    #[error("the {form} key does not parse")]
    Der {
        /// `SEC1 EC` or `PKCS#1 RSA`.
        form: &'static str,
        /// The parser's complaint.
        #[source]
        source: der::Error,
    },
    /// A SEC1 key without its curve: nothing says which curve it is on.
    #[error("the SEC1 EC key does not name its curve (write it with its parameters, e.g. `openssl ec -param_out`)")]
    NoCurve,
}

/// The labels tried, in order, with how each becomes PKCS#8.
const FORMS: [(&str, Form); 3] = [
    ("PRIVATE KEY", Form::Pkcs8),
    ("RSA PRIVATE KEY", Form::Pkcs1),
    ("EC PRIVATE KEY", Form::Sec1),
];

#[derive(Debug, Clone, Copy)]
enum Form {
    Pkcs8,
    Pkcs1,
    Sec1,
}

/// The PKCS#8 DER of the first private key in `pem`, whichever of the
/// three forms it is in.
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, KeyPemError> {
    // Legacy OpenSSL encryption puts headers in the block; PKCS#8
    // encryption has a label of its own.
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(KeyPemError::Encrypted);
    }
    for (label, form) in FORMS {
        if let Some(der) = pem_blocks(pem, label)?.into_iter().next() {
            return match form {
                Form::Pkcs8 => Ok(der),
                Form::Pkcs1 => pkcs8_from_pkcs1(&der),
                Form::Sec1 => pkcs8_from_sec1(&der),
            };
        }
    }
    Err(KeyPemError::Missing)
}

/// Wraps a PKCS#1 `RSAPrivateKey` (checked to be a DER SEQUENCE).
fn pkcs8_from_pkcs1(der: &[u8]) -> Result<Vec<u8>, KeyPemError> {
    let bad = |source| KeyPemError::Der {
        form: "PKCS#1 RSA",
        source,
    };
    let mut reader = SliceReader::new(der).map_err(bad)?;
    reader
        .sequence(|r| r.read_slice(r.remaining_len()).map(|_| ()))
        .map_err(bad)?;
    reader.finish(()).map_err(bad)?;
    // The parameters of rsaEncryption are NULL.
    Ok(private_key_info(&RSA_ENCRYPTION, Some(&[0x05, 0x00]), der))
}

/// Wraps a SEC1 `ECPrivateKey`, its curve taken from its parameters.
fn pkcs8_from_sec1(der: &[u8]) -> Result<Vec<u8>, KeyPemError> {
    let bad = |source| KeyPemError::Der {
        form: "SEC1 EC",
        source,
    };
    let mut reader = SliceReader::new(der).map_err(bad)?;
    let curve = reader
        .sequence(|r| {
            let _version = u8::decode(r)?;
            let _key = OctetStringRef::decode(r)?;
            let curve = ContextSpecific::<ObjectIdentifier>::decode_explicit(r, TagNumber::N0)?;
            // The public key ([1]), if present, stays in the wrapped key.
            r.read_slice(r.remaining_len())?;
            Ok(curve.map(|c| c.value))
        })
        .map_err(bad)?;
    reader.finish(()).map_err(bad)?;
    let curve = curve.ok_or(KeyPemError::NoCurve)?;
    let mut params = Vec::new();
    tlv::write(0x06, curve.as_bytes(), &mut params);
    Ok(private_key_info(&EC_PUBLIC_KEY, Some(&params), der))
}

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET
/// STRING key }`, with the algorithm's DER `params` if any.
fn private_key_info(alg: &ObjectIdentifier, params: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    let mut alg_id = Vec::new();
    tlv::write(0x06, alg.as_bytes(), &mut alg_id);
    alg_id.extend_from_slice(params.unwrap_or_default());
    let mut body = vec![0x02, 0x01, 0x00];
    tlv::write(0x30, &alg_id, &mut body);
    tlv::write(0x04, key, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    tlv::write(0x30, &body, &mut out);
    out
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::ca::pem::der_to_pem;
    use crate::testing::openssl;

    /// The key openssl wrote in `file` (SEC1 or PKCS#1) loads, and is the
    /// key whose public half openssl derives from the same file.
    fn loads_as_openssl_reads_it(dir: &std::path::Path, file: &str, label: &str) {
        let pem = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(pem.contains(&format!("BEGIN {label}")), "{pem}");
        let pkcs8 = pkcs8_from_pem(&pem).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let spki = openssl(dir, &["pkey", "-in", file, "-pubout", "-outform", "DER"]);
        assert_eq!(rcgen::PublicKeyData::subject_public_key_info(&key), spki);
    }

    #[test]
    fn sec1_and_pkcs1_keys_from_openssl_load() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "p256.key",
            ],
        );
        loads_as_openssl_reads_it(d, "p256.key", "EC PRIVATE KEY");
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "p384.key",
            ],
        );
        loads_as_openssl_reads_it(d, "p384.key", "EC PRIVATE KEY");
        openssl(d, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
        loads_as_openssl_reads_it(d, "rsa.key", "RSA PRIVATE KEY");
        // PKCS#8 passes through unchanged.
        let key = rcgen::KeyPair::generate().unwrap();
        assert_eq!(
            pkcs8_from_pem(&key.serialize_pem()).unwrap(),
            key.serialize_der()
        );
    }

    #[test]
    fn unusable_keys_say_why() {
        let err = |pem: &str| pkcs8_from_pem(pem).unwrap_err().to_string();
        assert!(err("").contains("no PEM block labelled PRIVATE KEY"));
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(err(enc).contains("is encrypted"));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(err(legacy).contains("is encrypted"));
        let garbage = der_to_pem(&[0x30, 0x03, 0x02, 0x01], "EC PRIVATE KEY");
        assert!(
            err(&garbage).contains("the SEC1 EC key does not parse"),
            "{}",
            err(&garbage)
        );
        let not_seq = der_to_pem(&[0x04, 0x00], "RSA PRIVATE KEY");
        assert!(err(&not_seq).contains("the PKCS#1 RSA key does not parse"));
        // version 1, a key, no [0] curve.
        let no_curve = der_to_pem(
            &[0x30, 0x05, 0x02, 0x01, 0x01, 0x04, 0x00],
            "EC PRIVATE KEY",
        );
        assert!(
            err(&no_curve).contains("does not name its curve"),
            "{}",
            err(&no_curve)
        );
    }
}
