//! Retry delays for a client that must keep trying (the helper and the
//! OIDC provider following an agent that restarts, an agent reconnecting
//! to its servers): short at first, then longer, back to short after a
//! success.

use std::time::Duration;

use crate::errors::Chain;

/// Retry delays after a failure: 0.5 s doubling to 30 s, reset by success.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    /// The first delay is the shortest.
    pub fn new() -> Backoff {
        Backoff(Self::FIRST)
    }

    /// The delay to wait now; the next one doubles.
    pub fn delay(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        d
    }

    /// The delay to wait now with full jitter: drawn uniformly below the
    /// backoff, so that clients that failed together (agents that lost
    /// the same server) do not retry together. The next one doubles.
    pub fn jittered_delay(&mut self) -> Duration {
        use ring::rand::SecureRandom as _;
        let d = self.delay();
        let mut b = [0u8; 8];
        // On failure the delay is just zero.
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(u64::from_le_bytes(b) % ms)
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// After one session of a stream that must be followed forever: logs how
/// it ended (`what` says what stays in place meanwhile) and waits out the
/// backoff before the next attempt.
pub async fn pause_after<E: std::error::Error>(
    backoff: &mut Backoff,
    outcome: Result<(), E>,
    what: &str,
) {
    let delay = backoff.delay();
    match outcome {
        Ok(()) => tracing::warn!(?delay, "the stream ended; {what}; reconnecting"),
        Err(e) => tracing::warn!(error = %Chain(&e), ?delay, "the stream failed; {what}; retrying"),
    }
    tokio::time::sleep(delay).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_stay_below_a_doubling_bound() {
        let mut b = Backoff::new();
        let mut bound = Backoff::FIRST;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..12 {
            let d = b.jittered_delay();
            assert!(d < bound, "{d:?} >= {bound:?}");
            seen.insert(d);
            bound = (bound * 2).min(Backoff::MAX);
        }
        assert!(seen.len() > 1, "the jitter is random");
        b.reset();
        assert!(b.jittered_delay() < Backoff::FIRST);
    }
}
