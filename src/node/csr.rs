//! The CSRs a node sends. The subject is empty: the server takes only the
//! public key, and the SPIFFE ID always comes from the server's own records.

use crate::ca::KeyPair;

/// A CSR could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building a CSR failed")]
pub struct CsrBuildError(#[from] rcgen::Error);

/// A CSR for `key` with an empty subject: the server takes only the key.
pub fn make_csr(key: &KeyPair) -> Result<Vec<u8>, CsrBuildError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(key.rcgen())?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::KeyType;

    #[test]
    fn csr_carries_the_key_and_verifies() {
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let der = make_csr(&key).unwrap();
        let csr = crate::ca::csr::verify_csr(&der).unwrap();
        assert_eq!(csr.public_key_spki, key.public_key_spki());
    }
}
