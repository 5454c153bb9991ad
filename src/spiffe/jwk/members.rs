//! JWK key parameters as JSON members: the object a bundle or JWKS carries.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::{Map, Value};

use super::checks::{check_coordinate, left_pad, nonzero};
use super::{EcCurve, JwkError, JwkKeyParams};

/// The members of a public JWK. Serialised in go-jose's order so our
/// bundles read like SPIRE's; absent members are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwkJson {
    /// `use`: `x509-svid` or `jwt-svid` in a SPIFFE bundle, absent in a plain JWKS.
    pub key_use: Option<String>,
    /// `kty`: `EC` or `RSA`.
    pub kty: String,
    /// `kid`: required for JWT keys, absent for X.509 authorities.
    pub kid: Option<String>,
    /// `crv` (EC).
    pub crv: Option<String>,
    /// `x` (EC), unpadded base64url.
    pub x: Option<String>,
    /// `y` (EC), unpadded base64url.
    pub y: Option<String>,
    /// `n` (RSA), unpadded base64url.
    pub n: Option<String>,
    /// `e` (RSA), unpadded base64url.
    pub e: Option<String>,
    /// `x5c`: standard (padded) base64 DER certificates.
    pub x5c: Option<Vec<String>>,
}

impl Serialize for JwkJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let strings = [
            ("use", self.key_use.as_deref()),
            ("kty", Some(self.kty.as_str())),
            ("kid", self.kid.as_deref()),
            ("crv", self.crv.as_deref()),
            ("x", self.x.as_deref()),
            ("y", self.y.as_deref()),
            ("n", self.n.as_deref()),
            ("e", self.e.as_deref()),
        ];
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in strings {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        if let Some(x5c) = &self.x5c {
            map.serialize_entry("x5c", x5c)?;
        }
        map.end()
    }
}

// === impl JwkKeyParams ===

impl JwkKeyParams {
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

// === member readers ===

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
