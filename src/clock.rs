//! Time, injectable so that TTL and LRU can be tested without sleeping.

use chrono::{DateTime, TimeZone, Utc};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time. The cache asks it at every put, get and
/// maintenance run; implementations must be cheap and monotone enough for
/// LRU order to make sense.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: for tests of TTL and LRU.
///
/// ```
/// use scopecache::{Clock, ManualClock};
/// let clock = ManualClock::new(chrono::DateTime::UNIX_EPOCH);
/// clock.advance(std::time::Duration::from_secs(90));
/// assert_eq!(clock.now().timestamp(), 90);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            micros: AtomicI64::new(start.timestamp_micros()),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        self.micros.store(to.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        from_micros(self.micros.load(Ordering::SeqCst))
    }
}

/// Microseconds since the epoch as a time; out-of-range values (which only a
/// corrupt file can hold) clamp to the epoch.
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or(DateTime::UNIX_EPOCH)
}
