//! Delivery's settings: the `[delivery]` section of `node.toml`. Every field has its
//! default here and only here; durations are written for people ("48h", "5m", "10s").

use std::time::Duration;

use chrono::TimeDelta;
use entente_model::settings::{self, Invalid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Undelivered messages are dropped (and counted) after this long: the conventions' 48 h.
    #[serde(with = "settings::time_delta")]
    pub retention: TimeDelta,
    /// First retry delay; it doubles on each failure up to `backoff_max`.
    #[serde(with = "settings::time_delta")]
    pub backoff_base: TimeDelta,
    #[serde(with = "settings::time_delta")]
    pub backoff_max: TimeDelta,
    /// A push taking longer than this counts as a timeout and is retried.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// How often workers look at the clock when nothing wakes them.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// URLs HTTP pushes and file pushes by URL may go to: scheme, host, the port if given
    /// (any otherwise) and a path prefix, e.g. "https://connector.example.fr/entente".
    /// Empty: no push recipient by URL can be created.
    pub push_urls: Vec<String>,
    /// Directories file pushes may write into (or below). Empty: none.
    pub push_directories: Vec<std::path::PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retention: TimeDelta::hours(48),
            backoff_base: TimeDelta::seconds(1),
            backoff_max: TimeDelta::minutes(5),
            http_timeout: Duration::from_secs(10),
            tick: Duration::from_millis(100),
            push_urls: Vec::new(),
            push_directories: Vec::new(),
        }
    }
}

impl DeliveryConfig {
    /// What serde cannot check: non-zero periods, a backoff that can grow, a timeout an
    /// application server can meet; no period so long that a date computed with it
    /// leaves the calendar.
    pub fn validate(&self) -> Result<(), Invalid> {
        let std = |d: TimeDelta| d.to_std().unwrap_or_default();
        let ms = Duration::from_millis;
        let day = Duration::from_secs(86_400);
        // The conventions keep data 6 years at most; a day of backoff is already a retry
        // nobody waits for.
        settings::duration_between(
            "retention",
            std(self.retention),
            Duration::from_secs(1),
            2200 * day,
        )?;
        settings::duration_between("backoff_max", std(self.backoff_max), ms(1), day)?;
        settings::duration_between(
            "backoff_base",
            std(self.backoff_base),
            ms(1),
            std(self.backoff_max),
        )
        .map_err(|_| Invalid::new("backoff_base", "must be at least 1ms and at most backoff_max"))?;
        settings::duration_between("http_timeout", self.http_timeout, ms(100), ms(600_000))?;
        settings::duration_between("tick", self.tick, ms(1), ms(10_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeliveryConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_is_the_default() {
        assert_eq!(parse("").unwrap(), DeliveryConfig::default());
        let text = toml::to_string(&DeliveryConfig::default()).unwrap();
        assert!(text.contains("backoff_max = \"5m\""), "{text}");
        assert_eq!(parse(&text).unwrap(), DeliveryConfig::default());
    }

    #[test]
    fn reads_humantime_and_fills_the_rest() {
        let c = parse("http_timeout = \"300ms\"\nbackoff_max = \"2m\"\nretention = \"1day\"\n").unwrap();
        assert_eq!(c.http_timeout, Duration::from_millis(300));
        assert_eq!(c.backoff_max, TimeDelta::minutes(2));
        assert_eq!(c.retention, TimeDelta::hours(24));
        assert_eq!(c.backoff_base, TimeDelta::seconds(1));
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse("http_timeout = 300\n").unwrap_err();
        assert!(
            e.contains("http_timeout") && e.contains("expected a duration"),
            "{e}"
        );
        let e = parse("http_timeout_ms = 300\n").unwrap_err();
        assert!(
            e.contains("unknown field") && e.contains("http_timeout_ms"),
            "{e}"
        );
        let e = parse("http_timeout = \"50ms\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "http_timeout");
        assert!(e.reason.contains("between 100ms and 10m"), "{e}");
        let e = parse("backoff_base = \"10m\"\n").unwrap().validate().unwrap_err();
        assert_eq!(e.field, "backoff_base");
        assert!(e.reason.contains("at most backoff_max"), "{e}");
    }
}
