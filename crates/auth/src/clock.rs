//! Time sources for tokens, throttling and quotas.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::lock;

/// Source of the current UTC time.
///
/// Every time-dependent rule in this crate (token expiry, token request
/// throttling, the per-second limiter and the UTC day of the daily quota)
/// reads the time through this trait, so tests can move time forward.
pub trait Clock: Send + Sync + Debug {
    /// Returns the current time.
    fn now(&self) -> DateTime<Utc>;
}

/// Clock that reads the operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Clock that moves only when [`ManualClock::advance`] or [`ManualClock::set`] is called.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// Creates a clock that reads `start` until it is moved.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    ///
    /// # Panics
    /// Panics if `by` does not fit a [`TimeDelta`] or the result overflows
    /// [`DateTime<Utc>`]; neither happens with durations below about 290,000 years.
    pub fn advance(&self, by: Duration) {
        let delta = TimeDelta::from_std(by).expect("duration fits a TimeDelta");
        let mut now = lock(&self.now);
        *now = now
            .checked_add_signed(delta)
            .expect("advanced time fits a DateTime<Utc>");
    }

    /// Sets the clock to `to`, which may be earlier than the current reading.
    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.now) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }
}
