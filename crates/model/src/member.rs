use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ModelError;

/// Stable identifier of a federation member (`tours-metropole`, `smo-vdln`).
///
/// Restricted to a slug so it is safe in file names, keys, metrics labels and URLs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MemberId(String);

impl MemberId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MemberId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModelError::BadMemberId(s.chars().take(80).collect()))
        }
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_only() {
        assert!("tours-metropole".parse::<MemberId>().is_ok());
        assert!("smo-vdln-41".parse::<MemberId>().is_ok());
        for bad in ["", "-x", "Tours", "a b", "é", &"a".repeat(65)] {
            assert!(bad.parse::<MemberId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<MemberId>("\"Bad Id\"").is_err());
    }
}
