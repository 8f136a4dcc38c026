//! What every crate's settings share: durations written for people ("200ms", "5s",
//! "24h", through `humantime`) and the error a settings' `validate()` returns, naming the
//! field whose value serde accepted but the crate cannot use.

use std::time::Duration;

use chrono::TimeDelta;

pub use humantime_serde::re::humantime;

/// A setting whose value parsed but is out of range: `field` is its key inside the
/// crate's section (`dedup_window`); the node adds the section and the file's line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// `value` lies in `min..=max`, or the error says so with both bounds written as in the
/// file ("must be between 1ms and 5s").
pub fn duration_between(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), Invalid> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(Invalid::new(
        field,
        format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ),
    ))
}

/// `value` is at least `min`, or the error says so ("must be at least 1s").
pub fn duration_at_least(field: &'static str, value: Duration, min: Duration) -> Result<(), Invalid> {
    if value >= min {
        return Ok(());
    }
    Err(Invalid::new(
        field,
        format!("must be at least {}", humantime::format_duration(min)),
    ))
}

/// `value` is at least `min`, or the error says so.
pub fn at_least<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    min: T,
) -> Result<(), Invalid> {
    if value >= min {
        return Ok(());
    }
    Err(Invalid::new(field, format!("must be at least {min}")))
}

/// `#[serde(with = "entente_model::settings::time_delta")]`: a `chrono::TimeDelta` written
/// as a humantime duration ("48h", "300s"), for the settings the clock-driven code keeps
/// as `TimeDelta`. Negative values cannot be written.
pub mod time_delta {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error as _, ser::Error as _};

    pub fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        let std = d
            .to_std()
            .map_err(|_| S::Error::custom(format!("{d} is negative")))?;
        humantime_serde::serialize(&std, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let std: Duration = humantime_serde::deserialize(d)?;
        TimeDelta::from_std(std)
            .map_err(|_| D::Error::custom(format!("{} is too long", humantime::format_duration(std))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct S {
        #[serde(with = "time_delta")]
        every: TimeDelta,
    }

    #[test]
    fn time_delta_reads_and_writes_humantime() {
        let s: S = serde_json::from_str(r#"{"every":"1day 2h"}"#).unwrap();
        assert_eq!(s.every, TimeDelta::hours(26));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"every":"1day 2h"}"#);
        let e = serde_json::from_str::<S>(r#"{"every":"soon"}"#).unwrap_err();
        assert!(e.to_string().contains("expected a duration"), "{e}");
    }

    #[test]
    fn ranges_name_the_field_and_bounds() {
        let ms = Duration::from_millis;
        assert!(duration_between("w", ms(200), ms(1), ms(5000)).is_ok());
        let e = duration_between("w", ms(0), ms(1), ms(5000)).unwrap_err();
        assert_eq!(e.to_string(), "field `w`: must be between 1ms and 5s");
        assert_eq!(at_least("n", 0u32, 1).unwrap_err().reason, "must be at least 1");
        let e = duration_at_least("d", Duration::ZERO, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.reason, "must be at least 1s");
    }
}
