use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// The source of "now" for everything that depends on it (last-seen, expiry, billing
/// months), so a test or a scenario can run a year in seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock, UTC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; cheap to share between threads.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            micros: AtomicI64::new(start.timestamp_micros()),
        }
    }

    pub fn advance(&self, by: TimeDelta) {
        let us = by.num_microseconds().unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.micros.store(to.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// The wall clock plus an offset that only grows: a running node whose test harness can
/// jump hours or days ahead while frames keep flowing in real time.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_micros: AtomicI64,
}

impl OffsetClock {
    pub fn new(offset: TimeDelta) -> Self {
        Self {
            offset_micros: AtomicI64::new(offset.num_microseconds().unwrap_or(0).max(0)),
        }
    }

    /// Moves the clock forward; a negative step is ignored, time never goes back.
    pub fn advance(&self, by: TimeDelta) -> TimeDelta {
        let us = by.num_microseconds().unwrap_or(0).max(0);
        let total = self
            .offset_micros
            .fetch_add(us, Ordering::SeqCst)
            .saturating_add(us);
        TimeDelta::microseconds(total)
    }

    pub fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(TimeDelta::days(365));
        assert_eq!(c.now().to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn offset_clock_only_moves_forward() {
        let c = OffsetClock::default();
        c.advance(TimeDelta::hours(2));
        c.advance(TimeDelta::hours(-5));
        assert_eq!(c.offset(), TimeDelta::hours(2));
        assert!(c.now() > Utc::now() + TimeDelta::minutes(119));
    }
}
