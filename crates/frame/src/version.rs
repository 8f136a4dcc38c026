//! The LoRaWAN version and class a device speaks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MacVersion {
    #[serde(rename = "1.0.0")]
    V1_0_0,
    #[serde(rename = "1.0.1")]
    V1_0_1,
    #[serde(rename = "1.0.2")]
    V1_0_2,
    #[serde(rename = "1.0.3")]
    V1_0_3,
    #[serde(rename = "1.0.4")]
    V1_0_4,
    #[serde(rename = "1.1")]
    V1_1,
}

impl MacVersion {
    pub fn is_11(self) -> bool {
        self == MacVersion::V1_1
    }
    pub const ALL: [MacVersion; 6] = [
        MacVersion::V1_0_0,
        MacVersion::V1_0_1,
        MacVersion::V1_0_2,
        MacVersion::V1_0_3,
        MacVersion::V1_0_4,
        MacVersion::V1_1,
    ];
}

impl FromStr for MacVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().trim_start_matches(['v', 'V']) {
            "1.0" | "1.0.0" => Ok(MacVersion::V1_0_0),
            "1.0.1" => Ok(MacVersion::V1_0_1),
            "1.0.2" => Ok(MacVersion::V1_0_2),
            "1.0.3" => Ok(MacVersion::V1_0_3),
            "1.0.4" => Ok(MacVersion::V1_0_4),
            "1.1" | "1.1.0" => Ok(MacVersion::V1_1),
            other => Err(format!(
                "unknown LoRaWAN version {other:?} (1.0.0 to 1.0.4, or 1.1)"
            )),
        }
    }
}

impl fmt::Display for MacVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacVersion::V1_0_0 => "1.0.0",
            MacVersion::V1_0_1 => "1.0.1",
            MacVersion::V1_0_2 => "1.0.2",
            MacVersion::V1_0_3 => "1.0.3",
            MacVersion::V1_0_4 => "1.0.4",
            MacVersion::V1_1 => "1.1",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceClass {
    A,
    C,
}
