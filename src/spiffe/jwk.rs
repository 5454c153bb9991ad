//! Public keys as JWK parameters (RFC 7517/7518) and back to SubjectPublicKeyInfo.
//!
//! Keys live as SPKI DER everywhere else in Herald (that is what ring, rcgen
//! and certificates speak); bundles and JWKS documents need the JWK form. The
//! conversion is exact in both directions so that the x509-svid consistency
//! check (the JWK must match its `x5c` certificate) is a plain equality, and so
//! that a JWT key read back from a bundle verifies with ring unchanged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use const_oid::db::rfc5912::{
    ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1, SECP_521_R_1,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, UintRef};
use der::{Decode as _, Encode as _};
use serde::Serialize;
use serde_json::{Map, Value};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};

/// Why a key could not be converted between SPKI DER and JWK form.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    /// The SPKI (or its RSAPublicKey) is not valid DER, or re-encoding failed.
    #[error("public key is not valid DER: {0}")]
    Der(#[from] der::Error),
    /// Neither id-ecPublicKey nor rsaEncryption.
    #[error(
        "public key algorithm {oid} is not supported (expected id-ecPublicKey or rsaEncryption)"
    )]
    UnsupportedAlgorithm {
        /// Dotted OID found in the SPKI.
        oid: String,
    },
    /// id-ecPublicKey whose parameters are not one of the three named NIST curves.
    #[error("EC public key curve is not supported (expected P-256, P-384 or P-521): {detail}")]
    UnsupportedCurveOid {
        /// The OID found, or why none could be read.
        detail: String,
    },
    /// rsaEncryption parameters must be NULL (or absent).
    #[error("rsaEncryption parameters must be NULL")]
    RsaParameters,
    /// The subjectPublicKey BIT STRING has unused bits, so it is not a byte string.
    #[error("subjectPublicKey BIT STRING has unused bits")]
    UnusedBits,
    /// The EC point is compressed, of the wrong size, or otherwise not `04 || x || y`.
    #[error("EC point for {curve} must be uncompressed (0x04 || x || y) and {expected} bytes long, got {got} bytes")]
    BadEcPoint {
        /// JWK curve name.
        curve: &'static str,
        /// Required encoded length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// RSAPublicKey is not exactly `SEQUENCE { INTEGER n, INTEGER e }`.
    #[error("RSAPublicKey must be SEQUENCE {{ n INTEGER, e INTEGER }}, found {count} integers")]
    RsaPublicKeyShape {
        /// How many integers the SEQUENCE held.
        count: usize,
    },
    /// An RSA modulus or exponent of zero.
    #[error("RSA `{member}` is zero or empty")]
    ZeroRsaComponent {
        /// `n` or `e`.
        member: &'static str,
    },
    /// A required JWK member is absent.
    #[error("JWK member `{member}` is missing")]
    MissingMember {
        /// Member name.
        member: &'static str,
    },
    /// A JWK member that must be a string is something else.
    #[error("JWK member `{member}` must be a string")]
    NotAString {
        /// Member name.
        member: &'static str,
    },
    /// A JWK member is not unpadded base64url.
    #[error("JWK member `{member}` is not unpadded base64url: {source}")]
    Base64 {
        /// Member name.
        member: &'static str,
        /// Decoder's complaint.
        source: base64::DecodeError,
    },
    /// An EC coordinate that is not exactly the curve's length (go-jose enforces this).
    #[error("JWK member `{member}` must be {expected} bytes for {curve}, got {got}")]
    CoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// JWK curve name.
        curve: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A `kty` other than `EC` or `RSA`.
    #[error("JWK `kty` {kty:?} is not supported (expected \"EC\" or \"RSA\")")]
    UnsupportedKty {
        /// The value found.
        kty: String,
    },
    /// A `crv` other than the three NIST curves.
    #[error("JWK `crv` {crv:?} is not supported (expected \"P-256\", \"P-384\" or \"P-521\")")]
    UnsupportedCrv {
        /// The value found.
        crv: String,
    },
}

/// The NIST curves JWT-SVIDs and X509-SVIDs use (ES256/ES384/ES512).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// secp256r1 / prime256v1.
    P256,
    /// secp384r1.
    P384,
    /// secp521r1.
    P521,
}

impl EcCurve {
    /// The JWK `crv` value.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// Bytes per coordinate: JWK `x`/`y` must be exactly this long.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The namedCurve OID carried in the SPKI AlgorithmIdentifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => SECP_256_R_1,
            Self::P384 => SECP_384_R_1,
            Self::P521 => SECP_521_R_1,
        }
    }

    /// Inverse of [`EcCurve::jwk_name`].
    pub fn from_jwk_name(crv: &str) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|c| c.jwk_name() == crv)
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|c| c.oid() == oid)
    }
}

/// A public key in JWK terms: raw big-endian numbers, no encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JwkKeyParams {
    /// An uncompressed EC point; `x` and `y` are exactly [`EcCurve::coordinate_len`] bytes.
    Ec {
        /// Curve.
        crv: EcCurve,
        /// X coordinate, left-padded with zeros.
        x: Vec<u8>,
        /// Y coordinate, left-padded with zeros.
        y: Vec<u8>,
    },
    /// An RSA public key with leading zero bytes stripped.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
}

/// The members of a public JWK, declared in go-jose's order so our bundles
/// read like SPIRE's. Absent members are skipped when serialising.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JwkJson {
    /// `use`: `x509-svid` or `jwt-svid` in a SPIFFE bundle, absent in a plain JWKS.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// `kty`: `EC` or `RSA`.
    pub kty: String,
    /// `kid`: required for JWT keys, absent for X.509 authorities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `crv` (EC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// `x` (EC), unpadded base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// `y` (EC), unpadded base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// `n` (RSA), unpadded base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// `e` (RSA), unpadded base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// `x5c`: standard (padded) base64 DER certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

// === impl JwkKeyParams ===

impl JwkKeyParams {
    /// Reads the key out of SPKI DER as ring, rcgen and x509-cert produce it.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, JwkError> {
        let info = SubjectPublicKeyInfoRef::from_der(spki)?;
        let key = info
            .subject_public_key
            .as_bytes()
            .ok_or(JwkError::UnusedBits)?;
        let oid = info.algorithm.oid;
        if oid == ID_EC_PUBLIC_KEY {
            let crv = match info.algorithm.parameters_oid() {
                Ok(curve_oid) => {
                    EcCurve::from_oid(curve_oid).ok_or_else(|| JwkError::UnsupportedCurveOid {
                        detail: curve_oid.to_string(),
                    })?
                }
                Err(e) => {
                    return Err(JwkError::UnsupportedCurveOid {
                        detail: e.to_string(),
                    })
                }
            };
            let len = crv.coordinate_len();
            match key.split_first() {
                Some((0x04, xy)) if xy.len() == 2 * len => {
                    let (x, y) = xy.split_at(len);
                    Ok(Self::Ec {
                        crv,
                        x: x.to_vec(),
                        y: y.to_vec(),
                    })
                }
                _ => Err(JwkError::BadEcPoint {
                    curve: crv.jwk_name(),
                    expected: 1 + 2 * len,
                    got: key.len(),
                }),
            }
        } else if oid == RSA_ENCRYPTION {
            if info.algorithm.parameters.is_some_and(|p| !p.is_null()) {
                return Err(JwkError::RsaParameters);
            }
            let ints = Vec::<UintRef<'_>>::from_der(key)?;
            let [n, e] = ints.as_slice() else {
                return Err(JwkError::RsaPublicKeyShape { count: ints.len() });
            };
            Ok(Self::Rsa {
                n: nonzero(n.as_bytes(), "n")?.to_vec(),
                e: nonzero(e.as_bytes(), "e")?.to_vec(),
            })
        } else {
            Err(JwkError::UnsupportedAlgorithm {
                oid: oid.to_string(),
            })
        }
    }

    /// Writes SPKI DER identical to what ring and rcgen emit for the same key
    /// (named-curve OID for EC; NULL parameters for RSA).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, JwkError> {
        let (algorithm, key) = match self {
            Self::Ec { crv, x, y } => {
                let mut point = vec![0x04];
                point.extend_from_slice(&left_pad("x", x, *crv)?);
                point.extend_from_slice(&left_pad("y", y, *crv)?);
                let params = Any::encode_from(&crv.oid())?;
                (
                    AlgorithmIdentifierOwned {
                        oid: ID_EC_PUBLIC_KEY,
                        parameters: Some(params),
                    },
                    point,
                )
            }
            Self::Rsa { n, e } => {
                let n = UintRef::new(nonzero(n, "n")?)?;
                let e = UintRef::new(nonzero(e, "e")?)?;
                let key = vec![n, e].to_der()?;
                (
                    AlgorithmIdentifierOwned {
                        oid: RSA_ENCRYPTION,
                        parameters: Some(Any::null()),
                    },
                    key,
                )
            }
        };
        let info = SubjectPublicKeyInfoOwned {
            algorithm,
            subject_public_key: BitString::from_bytes(&key)?,
        };
        Ok(info.to_der()?)
    }

    /// The `kty` value.
    pub fn kty(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "EC",
            Self::Rsa { .. } => "RSA",
        }
    }

    /// The key-parameter members (`kty` plus `crv`/`x`/`y` or `n`/`e`);
    /// callers add `use`, `kid` and `x5c` as their document requires. Fails
    /// only for hand-built params that no key could have (oversized
    /// coordinates, zero RSA components).
    pub fn to_jwk_json(&self) -> Result<JwkJson, JwkError> {
        let b64 = |bytes: &[u8]| Some(URL_SAFE_NO_PAD.encode(bytes));
        Ok(match self {
            Self::Ec { crv, x, y } => JwkJson {
                kty: self.kty().to_owned(),
                crv: Some(crv.jwk_name().to_owned()),
                x: b64(&left_pad("x", x, *crv)?),
                y: b64(&left_pad("y", y, *crv)?),
                ..JwkJson::default()
            },
            Self::Rsa { n, e } => JwkJson {
                kty: self.kty().to_owned(),
                n: b64(nonzero(n, "n")?),
                e: b64(nonzero(e, "e")?),
                ..JwkJson::default()
            },
        })
    }

    /// Reads `kty` and its key parameters from a parsed JWK object, ignoring
    /// every other member. Leading zero bytes in `n`/`e` are tolerated and
    /// stripped, since some encoders emit them.
    pub fn from_jwk_members(obj: &Map<String, Value>) -> Result<Self, JwkError> {
        let kty = string_member(obj, "kty")?;
        match kty {
            "EC" => {
                let crv_name = string_member(obj, "crv")?;
                let crv =
                    EcCurve::from_jwk_name(crv_name).ok_or_else(|| JwkError::UnsupportedCrv {
                        crv: crv_name.to_owned(),
                    })?;
                let x = b64_member(obj, "x")?;
                check_coordinate("x", crv, x.len())?;
                let y = b64_member(obj, "y")?;
                check_coordinate("y", crv, y.len())?;
                Ok(Self::Ec { crv, x, y })
            }
            "RSA" => {
                let n = b64_member(obj, "n")?;
                let e = b64_member(obj, "e")?;
                Ok(Self::Rsa {
                    n: nonzero(&n, "n")?.to_vec(),
                    e: nonzero(&e, "e")?.to_vec(),
                })
            }
            other => Err(JwkError::UnsupportedKty {
                kty: other.to_owned(),
            }),
        }
    }
}

// === helpers ===

fn check_coordinate(member: &'static str, crv: EcCurve, got: usize) -> Result<(), JwkError> {
    let expected = crv.coordinate_len();
    if got != expected {
        return Err(JwkError::CoordinateLength {
            member,
            curve: crv.jwk_name(),
            expected,
            got,
        });
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Strips leading zeros and refuses a zero value.
fn nonzero<'a>(bytes: &'a [u8], member: &'static str) -> Result<&'a [u8], JwkError> {
    let stripped = strip_leading_zeros(bytes);
    if stripped.is_empty() {
        return Err(JwkError::ZeroRsaComponent { member });
    }
    Ok(stripped)
}

/// Widens a coordinate to the curve's fixed length, as JWK requires.
fn left_pad(member: &'static str, bytes: &[u8], crv: EcCurve) -> Result<Vec<u8>, JwkError> {
    let len = crv.coordinate_len();
    let bytes = strip_leading_zeros(bytes);
    if bytes.len() > len {
        return Err(JwkError::CoordinateLength {
            member,
            curve: crv.jwk_name(),
            expected: len,
            got: bytes.len(),
        });
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(bytes);
    Ok(out)
}

fn string_member<'a>(
    obj: &'a Map<String, Value>,
    member: &'static str,
) -> Result<&'a str, JwkError> {
    match obj.get(member) {
        None => Err(JwkError::MissingMember { member }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(JwkError::NotAString { member }),
    }
}

fn b64_member(obj: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, JwkError> {
    let s = string_member(obj, member)?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|source| JwkError::Base64 { member, source })
}

#[cfg(test)]
#[path = "jwk_tests.rs"]
mod tests;
