//! The rules JWK key parameters must meet, whichever form they arrive in:
//! EC coordinates of exactly the curve's length, RSA numbers that are not zero.

use super::{EcCurve, JwkError};

/// Refuses an EC coordinate that is not exactly the curve's length (go-jose enforces this).
pub(super) fn check_coordinate(
    member: &'static str,
    crv: EcCurve,
    got: usize,
) -> Result<(), JwkError> {
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
pub(super) fn nonzero<'a>(bytes: &'a [u8], member: &'static str) -> Result<&'a [u8], JwkError> {
    let stripped = strip_leading_zeros(bytes);
    if stripped.is_empty() {
        return Err(JwkError::ZeroRsaComponent { member });
    }
    Ok(stripped)
}

/// Widens a coordinate to the curve's fixed length, as JWK requires.
pub(super) fn left_pad(
    member: &'static str,
    bytes: &[u8],
    crv: EcCurve,
) -> Result<Vec<u8>, JwkError> {
    let len = crv.coordinate_len();
    let bytes = strip_leading_zeros(bytes);
    if bytes.len() > len {
        // Too long even without its leading zeros: the wrong-length error.
        check_coordinate(member, crv, bytes.len())?;
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(bytes);
    Ok(out)
}
