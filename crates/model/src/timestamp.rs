//! Timestamps in serde, for `#[serde(with = "entente_model::timestamp")]`: RFC 3339 text
//! in human-readable formats (JSON, TOML), as before; in binary ones (postcard in the
//! store, CBOR between peers) nanoseconds since the Unix epoch as one integer, which
//! costs a few nanoseconds to write and read where the text costs about a microsecond.
//! The integer covers the years 1677 to 2262; a time outside is an error, not a wrap.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, ser};

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return t.serialize(s);
    }
    let nanos = t
        .timestamp_nanos_opt()
        .ok_or_else(|| <S::Error as ser::Error>::custom(format!("{t} is outside 1677-2262")))?;
    s.serialize_i64(nanos)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        return DateTime::<Utc>::deserialize(d);
    }
    i64::deserialize(d).map(DateTime::from_timestamp_nanos)
}

/// The same for an optional timestamp.
pub mod option {
    use super::*;

    /// Borrows the timestamp so the `Some` branch serialises through the outer module.
    struct Wrap<'a>(&'a DateTime<Utc>);

    impl Serialize for Wrap<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(self.0, s)
        }
    }

    #[derive(Deserialize)]
    struct Unwrap(#[serde(with = "super")] DateTime<Utc>);

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&Wrap(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<Unwrap>::deserialize(d).map(|o| o.map(|u| u.0))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct At {
        #[serde(with = "crate::timestamp")]
        at: DateTime<Utc>,
        #[serde(with = "crate::timestamp::option", default)]
        seen: Option<DateTime<Utc>>,
    }

    fn sample() -> At {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap()
            + chrono::TimeDelta::nanoseconds(123_456_789);
        At { at, seen: Some(at) }
    }

    #[test]
    fn json_keeps_rfc3339_text() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            r#"{"at":"2026-12-01T18:00:00.123456789Z","seen":"2026-12-01T18:00:00.123456789Z"}"#
        );
        assert_eq!(serde_json::from_str::<At>(&json).unwrap(), sample());
        let none: At = serde_json::from_str(r#"{"at":"2026-12-01T18:00:00Z"}"#).unwrap();
        assert_eq!(none.seen, None);
    }

    #[test]
    fn binary_formats_carry_one_integer() {
        let bytes = postcard::to_stdvec(&sample()).unwrap();
        assert!(
            bytes.len() <= 2 * 10 + 1,
            "two varints and a tag, got {} bytes",
            bytes.len()
        );
        assert_eq!(postcard::from_bytes::<At>(&bytes).unwrap(), sample());
        let none = At {
            seen: None,
            ..sample()
        };
        let bytes = postcard::to_stdvec(&none).unwrap();
        assert_eq!(postcard::from_bytes::<At>(&bytes).unwrap(), none);
    }

    #[test]
    fn a_time_outside_the_integer_range_is_an_error_not_a_wrap() {
        let far = At {
            at: Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap(),
            seen: None,
        };
        assert!(postcard::to_stdvec(&far).is_err());
    }
}
