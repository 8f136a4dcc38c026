use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RegionError;

/// SF5 to SF12; a decoded value outside that is refused, so nothing downstream (airtime,
/// ADR) ever sees an SF0 a peer or a file claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8")]
pub struct SpreadingFactor(u8);

impl TryFrom<u8> for SpreadingFactor {
    type Error = String;
    fn try_from(sf: u8) -> Result<Self, String> {
        Self::new(sf).ok_or_else(|| format!("spreading factor {sf} is not between 5 and 12"))
    }
}

impl SpreadingFactor {
    pub fn new(sf: u8) -> Option<Self> {
        (5..=12).contains(&sf).then_some(Self(sf))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Bandwidth {
    Khz125,
    Khz250,
    Khz500,
}

impl Bandwidth {
    pub fn hz(self) -> u32 {
        match self {
            Self::Khz125 => 125_000,
            Self::Khz250 => 250_000,
            Self::Khz500 => 500_000,
        }
    }
}

/// A LoRa or FSK data rate as it travels in the Semtech protocol's `datr` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataRate {
    Lora {
        sf: SpreadingFactor,
        bw: Bandwidth,
    },
    /// FSK bit rate in bits per second.
    Fsk {
        bitrate: u32,
    },
}

impl DataRate {
    pub const fn lora(sf: u8, bw: Bandwidth) -> Self {
        Self::Lora {
            sf: SpreadingFactor(sf),
            bw,
        }
    }
}

impl FromStr for DataRate {
    type Err = RegionError;
    /// Parses `SF7BW125` (case-insensitive), the form every packet forwarder sends.
    fn from_str(s: &str) -> Result<Self, RegionError> {
        let bad = || RegionError::BadDataRate(s.chars().take(32).collect());
        let t = s.trim();
        let rest = t
            .get(..2)
            .filter(|p| p.eq_ignore_ascii_case("SF"))
            .and_then(|_| t.get(2..))
            .ok_or_else(bad)?;
        let at = rest
            .as_bytes()
            .windows(2)
            .position(|w| w.eq_ignore_ascii_case(b"BW"))
            .ok_or_else(bad)?;
        let (sf, bw) = (
            rest.get(..at).ok_or_else(bad)?,
            rest.get(at + 2..).ok_or_else(bad)?,
        );
        let sf = sf
            .parse::<u8>()
            .ok()
            .and_then(SpreadingFactor::new)
            .ok_or_else(bad)?;
        let bw = match bw {
            "125" => Bandwidth::Khz125,
            "250" => Bandwidth::Khz250,
            "500" => Bandwidth::Khz500,
            _ => return Err(bad()),
        };
        Ok(Self::Lora { sf, bw })
    }
}

impl fmt::Display for DataRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lora { sf, bw } => write!(f, "SF{}BW{}", sf.0, bw.hz() / 1000),
            Self::Fsk { bitrate } => write!(f, "FSK{bitrate}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoded_spreading_factor_outside_5_to_12_is_refused() {
        for sf in [0u8, 4, 13, 255] {
            let json = format!(r#"{{"Lora":{{"sf":{sf},"bw":"Khz125"}}}}"#);
            assert!(serde_json::from_str::<DataRate>(&json).is_err(), "SF{sf}");
        }
        let json = r#"{"Lora":{"sf":7,"bw":"Khz125"}}"#;
        assert_eq!(
            serde_json::from_str::<DataRate>(json).unwrap(),
            DataRate::lora(7, Bandwidth::Khz125)
        );
    }

    #[test]
    fn parses_forwarder_strings() {
        assert_eq!(
            "SF7BW125".parse::<DataRate>().unwrap(),
            DataRate::lora(7, Bandwidth::Khz125)
        );
        assert_eq!("sf12bw125".parse::<DataRate>().unwrap().to_string(), "SF12BW125");
        for bad in [
            "",
            "SF",
            "SF13BW125",
            "SF7BW100",
            "SF7",
            "BW125",
            "SFxBW125",
            "é",
            "Sé7BW125",
            "SF7Bé125",
        ] {
            assert!(bad.parse::<DataRate>().is_err(), "{bad}");
        }
    }
}
