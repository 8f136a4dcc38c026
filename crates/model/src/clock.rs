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

/// How far ahead a test clock may run: a century keeps every date it gives within what
/// timestamps and the calendar can hold, however many times it is moved.
const MAX_OFFSET_MICROS: i64 = 100 * 366 * 86_400 * 1_000_000;

impl OffsetClock {
    pub fn new(offset: TimeDelta) -> Self {
        let us = offset.num_microseconds().unwrap_or(MAX_OFFSET_MICROS);
        Self {
            offset_micros: AtomicI64::new(us.clamp(0, MAX_OFFSET_MICROS)),
        }
    }

    /// Moves the clock forward, up to a century in all; a negative step is ignored, time
    /// never goes back.
    pub fn advance(&self, by: TimeDelta) -> TimeDelta {
        let us = by.num_microseconds().unwrap_or(MAX_OFFSET_MICROS).max(0);
        let step = |total: i64| Some(total.saturating_add(us).min(MAX_OFFSET_MICROS));
        let before = self
            .offset_micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, step)
            .unwrap_or_default();
        TimeDelta::microseconds(before.saturating_add(us).min(MAX_OFFSET_MICROS))
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
    fn an_offset_clock_stops_a_century_ahead() {
        let c = OffsetClock::new(TimeDelta::MAX);
        assert_eq!(c.offset().num_microseconds(), Some(MAX_OFFSET_MICROS));
        let c = OffsetClock::new(TimeDelta::zero());
        for _ in 0..20 {
            c.advance(TimeDelta::days(20 * 365));
        }
        assert_eq!(c.offset().num_microseconds(), Some(MAX_OFFSET_MICROS));
        assert!(c.now() > Utc::now() + TimeDelta::days(36_500));
        c.advance(TimeDelta::days(-5));
        assert_eq!(c.offset().num_microseconds(), Some(MAX_OFFSET_MICROS));
    }

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
