//! EU868 duty-cycle accounting per gateway and sub-band (ETSI EN 300 220, sliding hour).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entente_model::GatewayEui;
use entente_region::Eu868;

/// Transmissions of the last hour on one gateway's sub-band: when, and for how long.
type Spent = VecDeque<(DateTime<Utc>, Duration)>;

#[derive(Debug, Default)]
pub struct DutyCycle {
    used: Mutex<HashMap<(GatewayEui, &'static str), Spent>>,
}

impl DutyCycle {
    /// Reserves `airtime` on the gateway's sub-band if the hour's budget allows it.
    pub fn try_reserve(&self, gw: GatewayEui, freq_hz: u32, airtime: Duration, now: DateTime<Utc>) -> bool {
        let Ok(band) = Eu868::sub_band(freq_hz) else {
            return false;
        };
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let q = used.entry((gw, band.name)).or_default();
        let hour_ago = now - TimeDelta::hours(1);
        while q.front().is_some_and(|(t, _)| *t < hour_ago) {
            q.pop_front();
        }
        let spent: Duration = q.iter().map(|(_, d)| *d).sum();
        if spent + airtime > band.budget_per_hour() {
            return false;
        }
        q.push_back((now, airtime));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_percent_band_runs_out_then_recovers() {
        let d = DutyCycle::default();
        let gw = GatewayEui([1; 8]);
        let t0 = DateTime::UNIX_EPOCH;
        // 868.1 MHz is in a 1 % band: 36 s per hour.
        let mut n = 0;
        while d.try_reserve(gw, 868_100_000, Duration::from_secs(1), t0) {
            n += 1;
        }
        assert_eq!(n, 36);
        // RX2 (869.525 MHz, 10 %) is a different budget.
        assert!(d.try_reserve(gw, 869_525_000, Duration::from_secs(1), t0));
        assert!(d.try_reserve(
            gw,
            868_100_000,
            Duration::from_secs(1),
            t0 + TimeDelta::minutes(61)
        ));
    }
}
