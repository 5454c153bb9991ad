//! Stateless challenges: `expires_at (8 bytes, big endian) || nonce (16) ||
//! HMAC-SHA256(key, label || expires_at || nonce) (32)`. The server keeps
//! only the random key (per process: a restart invalidates the challenges in
//! flight, which the agent simply asks again), so a challenge costs no
//! storage and a forged or altered one fails the MAC.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a challenge is accepted.
pub const CHALLENGE_TTL_SECS: i64 = 60;

const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 8 + NONCE_LEN;
const MAC_LABEL: &[u8] = b"herald-x509pop-challenge-v1\0";

/// Why a challenge is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChallengeError {
    /// Not the length of a challenge.
    #[error("the challenge is malformed ({0} bytes)")]
    Malformed(usize),
    /// The MAC does not match: not issued by this server (process).
    #[error(
        "the challenge was not issued by this server (or the server restarted): ask for a new one"
    )]
    BadMac,
    /// Past its expiry.
    #[error("the challenge expired at {0}: ask for a new one")]
    Expired(i64),
    /// The system random generator failed.
    #[error("the random generator failed")]
    Random,
}

/// The server's challenge MAC key.
pub struct ChallengeKey {
    key: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, ChallengeError> {
        let rng = SystemRandom::new();
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| ChallengeError::Random)?;
        Ok(ChallengeKey { key, rng })
    }

    /// A challenge valid until `now + CHALLENGE_TTL_SECS`, and that expiry.
    pub fn issue(&self, now: i64) -> Result<(Vec<u8>, i64), ChallengeError> {
        let expires_at = now.saturating_add(CHALLENGE_TTL_SECS);
        let mut out = Vec::with_capacity(BODY_LEN + MAC_LEN);
        out.extend_from_slice(&expires_at.to_be_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ChallengeError::Random)?;
        out.extend_from_slice(&nonce);
        let tag = hmac::sign(&self.key, &[MAC_LABEL, &out].concat());
        out.extend_from_slice(tag.as_ref());
        Ok((out, expires_at))
    }

    /// Checks that this key issued `challenge` and that it has not expired
    /// at `now` (MAC first, so an attacker learns nothing from the expiry).
    pub fn check(&self, challenge: &[u8], now: i64) -> Result<(), ChallengeError> {
        if challenge.len() != BODY_LEN + MAC_LEN {
            return Err(ChallengeError::Malformed(challenge.len()));
        }
        let (body, tag) = challenge.split_at(BODY_LEN);
        hmac::verify(&self.key, &[MAC_LABEL, body].concat(), tag)
            .map_err(|_| ChallengeError::BadMac)?;
        let mut be = [0u8; 8];
        be.copy_from_slice(&body[..8]);
        let expires_at = i64::from_be_bytes(be);
        if now > expires_at {
            return Err(ChallengeError::Expired(expires_at));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_challenge_checks_until_expiry() {
        let key = ChallengeKey::generate().unwrap();
        let (c, exp) = key.issue(1000).unwrap();
        assert_eq!(exp, 1000 + CHALLENGE_TTL_SECS);
        assert_eq!(key.check(&c, 1000), Ok(()));
        assert_eq!(key.check(&c, exp), Ok(()));
        assert_eq!(key.check(&c, exp + 1), Err(ChallengeError::Expired(exp)));
    }

    #[test]
    fn altered_foreign_and_short_challenges_are_refused() {
        let key = ChallengeKey::generate().unwrap();
        let (mut c, _) = key.issue(1000).unwrap();
        let other = ChallengeKey::generate().unwrap();
        assert_eq!(other.check(&c, 1000), Err(ChallengeError::BadMac));
        // Pushing the expiry forward breaks the MAC.
        c[0] ^= 1;
        assert_eq!(key.check(&c, 1000), Err(ChallengeError::BadMac));
        assert_eq!(
            key.check(&c[..10], 1000),
            Err(ChallengeError::Malformed(10))
        );
    }
}
