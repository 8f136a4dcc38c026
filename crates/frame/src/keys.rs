//! AES-128 keys: hex in text formats, redacted in logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct AesKey(pub [u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an AES-128 key is 32 hexadecimal digits, got {0:?}")]
pub struct BadKey(pub String);

impl AesKey {
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }
}

// Never print key material, even in debug logs.
impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(..)")
    }
}

impl FromStr for AesKey {
    type Err = BadKey;
    fn from_str(s: &str) -> Result<Self, BadKey> {
        let t = s.trim();
        let mut k = [0u8; 16];
        if t.len() != 32 || hex::decode_to_slice(t, &mut k).is_err() {
            return Err(BadKey(s.chars().take(40).collect()));
        }
        Ok(AesKey(k))
    }
}

impl Serialize for AesKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for AesKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(AesKey(<[u8; 16]>::deserialize(d)?))
        }
    }
}
