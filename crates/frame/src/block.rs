//! A block of DevAddrs (prefix/length), as the roster assigns them to members.

use std::fmt;

use entente_model::DevAddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A contiguous block of DevAddrs owned by this member (prefix/length, as in the roster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevAddrBlock {
    pub prefix: u32,
    pub len: u8,
}

impl DevAddrBlock {
    pub fn contains(&self, a: DevAddr) -> bool {
        self.len == 0 || (a.0 ^ self.prefix) >> (32 - self.len as u32) == 0
    }
    pub fn random(&self) -> DevAddr {
        let host_bits = 32 - self.len as u32;
        let mask = if host_bits == 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        };
        DevAddr((self.prefix & !mask) | (fastrand::u32(..) & mask))
    }
}

impl std::str::FromStr for DevAddrBlock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not PREFIX/LENGTH, e.g. 26011000/20"))?;
        let prefix: DevAddr = p.parse().map_err(|e| format!("{e}"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("prefix length {l:?} is not a number"))?;
        if len > 32 {
            return Err(format!("prefix length {len} is over 32"));
        }
        Ok(DevAddrBlock {
            prefix: prefix.0,
            len,
        })
    }
}

/// `PREFIX/LENGTH` with the prefix as 8 hexadecimal digits: `26011000/20`.
impl fmt::Display for DevAddrBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}/{}", self.prefix, self.len)
    }
}

/// Written as its `Display` form, so a settings file says `dev_addr_block = "26011000/20"`.
impl Serialize for DevAddrBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DevAddrBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_displays_and_serialises_prefix_slash_length() {
        let b: DevAddrBlock = "26011000/20".parse().unwrap();
        assert_eq!(
            b,
            DevAddrBlock {
                prefix: 0x2601_1000,
                len: 20
            }
        );
        assert_eq!(b.to_string(), "26011000/20");
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"26011000/20\"");
        let back: DevAddrBlock = serde_json::from_str("\"26011000/20\"").unwrap();
        assert_eq!(back, b);
        assert!(b.contains(DevAddr(0x2601_1ABC)) && !b.contains(DevAddr(0x2601_2000)));
    }

    #[test]
    fn refuses_what_is_not_a_block() {
        for bad in ["26011000", "26011000/33", "2601100/20", "26011000/x"] {
            assert!(bad.parse::<DevAddrBlock>().is_err(), "{bad}");
            assert!(
                serde_json::from_str::<DevAddrBlock>(&format!("{bad:?}")).is_err(),
                "{bad}"
            );
        }
    }
}
