//! What a usage statement carries: a day's figures per device and in total, and the
//! frames they count. `entente-ledger` counts them in RocksDB and re-exports these.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    Uplink,
    Downlink,
    Join,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameUse {
    pub device: String,
    pub kind: FrameKind,
    pub bytes: u32,
    pub airtime_us: u32,
    pub at: DateTime<Utc>,
}

/// One device's figures for a period, as a statement carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Figures {
    pub uplinks: u64,
    pub downlinks: u64,
    pub joins: u64,
    pub bytes: u64,
    pub airtime_us: u64,
}

impl Figures {
    /// Counts one more frame.
    pub fn add(&mut self, f: &FrameUse) {
        match f.kind {
            FrameKind::Uplink => self.uplinks += 1,
            FrameKind::Downlink => self.downlinks += 1,
            FrameKind::Join => self.joins += 1,
        }
        self.bytes += f.bytes as u64;
        self.airtime_us += f.airtime_us as u64;
    }

    /// Saturating: a peer's statement may carry any figures.
    pub fn frames(&self) -> u64 {
        self.uplinks
            .saturating_add(self.downlinks)
            .saturating_add(self.joins)
    }
}

/// A day of one agreement's traffic as one side counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySummary {
    pub agreement: String,
    pub day: NaiveDate,
    pub totals: Figures,
    pub devices: BTreeMap<String, Figures>,
    /// Root of the Merkle tree over the day's frame hashes in ascending order.
    pub merkle_root: String,
}
