//! Key fixtures shared by the spiffe unit tests.

use base64::Engine as _;

/// OpenSSL 2048-bit RSA public key (SPKI DER, standard base64). ring cannot
/// generate RSA keys, so this one is fixed.
pub(crate) const RSA_2048_SPKI: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA56hH/es60pgseweXYGFc8peKVzDBVPw5/tljtWOXa+qvrKODWSHCWqrHa2ciqJHXswxkwTOALIqYmq2+Z+y8lQXdj9pCDB959LFP7ax9K8XRUTbUwDZOSBSr+0LyGuneGLgNohHYQT15+ThoyahlRAqukgFD47h56MQgC3KwLwuVv+3dmeRE/xF0sgT7dUJrBLWska14KgG4YZFVhjs8hQnHYlGbpUGsd6IkOdTwHWGS+Mf0GwBVyAJ6T5tT8esqLDEuD6HUKIhf6M7MTAX1LPNv+O+/JJVYxExyc+CdXuo8H6pOkb3PJH1x4tdr5JDxB548sWngvBgAbI3FhziPMQIDAQAB";

/// Decodes a standard-base64 fixture.
pub(crate) fn der(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// SPKI DER of a fresh rcgen (ring) key.
pub(crate) fn rcgen_spki(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    use rcgen::PublicKeyData as _;
    rcgen::KeyPair::generate_for(alg)
        .unwrap()
        .subject_public_key_info()
}
