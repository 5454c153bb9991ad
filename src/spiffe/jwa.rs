//! The JWS algorithms (RFC 7518, "JWA") a JWT-SVID may use.
//!
//! JWT-SVID.md closes the list at nine: RSA PKCS#1 v1.5, RSA-PSS and ECDSA at
//! three hash sizes. `none`, HMAC and EdDSA are refused by every SPIFFE
//! validator, so they cannot even be represented here.

use std::fmt;
use std::str::FromStr;

use super::jwt::JwtError;

/// The JWS algorithms JWT-SVID.md allows, named as in the JWA registry.
#[allow(clippy::upper_case_acronyms)] // the names are the registry's `alg` values
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512.
    ES512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
}

impl JwtAlgorithm {
    /// Every allowed algorithm.
    pub const ALL: [Self; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
    ];

    /// The header `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = JwtError;

    /// Case-sensitive, like the JOSE registry: `es256` is not ES256.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm { alg: s.to_owned() })
    }
}
