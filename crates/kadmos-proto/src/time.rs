//! Time as the core sees it: a monotonic timestamp handed in by whoever drives the node.
//!
//! The core never reads a clock. The tokio runtime passes the time elapsed since it started;
//! the simulator passes virtual time. Microseconds in a `u64` are compact (8 bytes, which
//! matters when the simulator holds 100,000 nodes) and cover half a million years.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an epoch chosen by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The driver's epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The timestamp `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The timestamp `since_epoch` after the epoch (saturating at `u64::MAX` microseconds).
    pub fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(since_epoch.as_micros().min(u64::MAX as u128) as u64)
    }

    /// Time since the epoch.
    pub fn as_duration(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs.as_micros().min(u64::MAX as u128) as u64))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs.as_micros().min(u64::MAX as u128) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arithmetic saturates instead of wrapping, so a driver passing odd times cannot panic the core.
    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_micros(5);
        assert_eq!(t - Duration::from_secs(1), Timestamp::ZERO);
        assert_eq!(Timestamp::from_micros(u64::MAX) + Duration::from_secs(1), Timestamp::from_micros(u64::MAX));
        assert_eq!(Timestamp::from_micros(3).saturating_since(t), Duration::ZERO);
        assert_eq!(t.saturating_since(Timestamp::from_micros(3)), Duration::from_micros(2));
    }
}
