//! Retry delays for a client that must keep trying (the helper and the
//! OIDC provider following an agent that restarts): short at first, then
//! longer, back to short after a success.

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
