use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelError;

/// Parses exactly `N` bytes of hex, accepting upper or lower case and optional `-`/`:`
/// separators, as operators paste EUIs from gateway labels and spreadsheets.
fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], ModelError> {
    let bad = || ModelError::BadHex {
        what,
        expected: N * 2,
        got: s.chars().take(64).collect(),
    };
    let digits: String = s.trim().chars().filter(|c| *c != '-' && *c != ':').collect();
    if digits.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(&digits, &mut out).map_err(|_| bad())?;
    Ok(out)
}

macro_rules! eui_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 8]);

        impl $name {
            pub const fn from_u64(v: u64) -> Self {
                Self(v.to_be_bytes())
            }
            pub const fn to_u64(self) -> u64 {
                u64::from_be_bytes(self.0)
            }
            pub const fn as_bytes(&self) -> &[u8; 8] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, ModelError> {
                parse_hex::<8>($what, s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 8]>::deserialize(d).map(Self)
                }
            }
        }
    };
}

eui_type!(
    /// Generic EUI-64 (IEEE), big-endian as printed on labels.
    Eui64, "EUI-64"
);
eui_type!(
    /// A gateway's EUI, as sent in every Semtech UDP datagram.
    GatewayEui, "gateway EUI"
);
eui_type!(
    /// A device's DevEUI.
    DevEui, "DevEUI"
);
eui_type!(
    /// A device's JoinEUI (AppEUI in LoRaWAN 1.0.x).
    JoinEui, "JoinEUI"
);

/// A device's 32-bit network address; printed big-endian as in the specification.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DevAddr(pub u32);

impl FromStr for DevAddr {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        parse_hex::<4>("DevAddr", s).map(|b| Self(u32::from_be_bytes(b)))
    }
}

impl fmt::Display for DevAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for DevAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevAddr({self})")
    }
}

impl Serialize for DevAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for DevAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            u32::deserialize(d).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui_parses_with_separators_and_case() {
        let a: GatewayEui = "0080000000ABCDEF".parse().unwrap();
        let b: GatewayEui = "00-80-00-00-00-ab-cd-ef".parse().unwrap();
        let c: GatewayEui = "00:80:00:00:00:ab:cd:ef".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.to_string(), "0080000000abcdef");
        assert_eq!(a.to_u64(), 0x0080_0000_00ab_cdef);
    }

    #[test]
    fn eui_rejects_bad_input_with_reason() {
        for bad in [
            "",
            "0080",
            "0080000000abcdefff",
            "zz80000000abcdef",
            "é080000000abcde",
        ] {
            let err = bad.parse::<GatewayEui>().unwrap_err();
            assert!(err.to_string().contains("16 hexadecimal digits"), "{err}");
        }
    }

    #[test]
    fn serde_is_hex_in_json() {
        let e = DevEui::from_u64(0x70b3d57ed0000001);
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, "\"70b3d57ed0000001\"");
        assert_eq!(serde_json::from_str::<DevEui>(&j).unwrap(), e);
        let a: DevAddr = "26011BDA".parse().unwrap();
        assert_eq!(a.0, 0x2601_1bda);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"26011bda\"");
    }
}
