//! The one source of time. Every decision that depends on "now" (SVID
//! renewal, CA rotation, entry expiry, federation refresh) reads it through a
//! [`Clock`], so the logic can be tested with a [`FakeClock`] instead of
//! sleeping for hours.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Tells the time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// A shared clock, as held by long-running tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        // A system clock set before 1970 reads as the epoch itself: every
        // credential then looks unexpired-but-future, which fails closed.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Seconds since the Unix epoch, from the system clock; for call sites that
/// take their time as a parameter further down.
pub fn now_unix() -> i64 {
    SystemClock.now_unix()
}

/// `t` as RFC 3339 in UTC with milliseconds (`2026-12-04T16:35:50.123Z`):
/// the form of every time Herald writes for people (audit records, logs).
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Unix seconds as [`rfc3339_utc`]; times before 1970 read as the epoch.
pub fn unix_rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    rfc3339_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// A clock that moves only when told to; for tests of time-driven logic.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    /// A clock that reads `start`.
    pub fn new(start: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(start)))
    }

    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_for_people_are_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_402_150_123);
        assert_eq!(rfc3339_utc(t), "2026-12-04T16:35:50.123Z");
        assert_eq!(unix_rfc3339(1_796_402_150), "2026-12-04T16:35:50.000Z");
        assert_eq!(unix_rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new(100);
        assert_eq!(c.now_unix(), 100);
        c.advance(5);
        assert_eq!(c.now_unix(), 105);
        let shared: SharedClock = Arc::new(c.clone());
        c.set(7);
        assert_eq!(shared.now_unix(), 7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(now_unix() > 1_577_836_800);
    }
}
