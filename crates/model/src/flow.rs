//! The kinds of traffic an agreement allows (001 annex 1): the federation classifies each
//! roamed frame into one of these before the policy sees it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    Join,
    /// MAC commands only (FPort 0, or no FPort).
    Mac,
    UplinkData,
    DownlinkData,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Join => "join",
            Flow::Mac => "mac",
            Flow::UplinkData => "uplink_data",
            Flow::DownlinkData => "downlink_data",
        }
    }
}
