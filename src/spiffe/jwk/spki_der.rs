//! JWK key parameters to and from SubjectPublicKeyInfo DER, byte-exact in
//! both directions (see the parent module for why).

use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION};
use der::asn1::{Any, BitString, UintRef};
use der::{Decode as _, Encode as _};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};

use super::checks::{left_pad, nonzero};
use super::{EcCurve, JwkError, JwkKeyParams};

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
}
