//! Usage counters per agreement and device, on both sides of a roamed frame. Each frame
//! is recorded under its hash, in the same write as the device's counters, so counting is
//! idempotent (a frame sent again after a crash is not counted twice) and a day's frames
//! give a Merkle root either side can prove any single frame against. Writes go to the
//! WAL: a kill -9 loses nothing that was counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use entente_store::{Durability, Store, Table};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::LedgerError;
pub use entente_documents::usage::{DaySummary, Figures, FrameKind, FrameUse};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCounters {
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub uplinks: u64,
    pub downlinks: u64,
    pub joins: u64,
    pub bytes: u64,
    pub airtime_us: u64,
    /// Months (yyyymm) in which the device was heard.
    pub months: BTreeSet<u32>,
}

pub struct Devices;
impl Table for Devices {
    const NAME: &'static str = "usage_devices";
    type Key = String;
    type Value = DeviceCounters;
}

pub struct Frames;
impl Table for Frames {
    const NAME: &'static str = "usage_frames";
    type Key = String;
    type Value = FrameUse;
}

pub const TABLES: &[&str] = &[Devices::NAME, Frames::NAME];

/// The Merkle root of sorted leaf hashes: pairs hashed up, an odd last node carried.
pub fn merkle_root(mut level: Vec<[u8; 32]>) -> String {
    if level.is_empty() {
        return hex::encode([0u8; 32]);
    }
    level.sort_unstable();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update([1]);
                    h.update(a);
                    h.update(b);
                    h.finalize().into()
                }
                [a] => *a,
                _ => [0; 32],
            })
            .collect();
    }
    hex::encode(level[0])
}

pub fn frame_hash(phy_payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0]);
    h.update(phy_payload);
    h.finalize().into()
}

fn day_key(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

pub struct Usage {
    store: Arc<Store>,
    write: Mutex<()>,
}

impl Usage {
    pub fn new(store: Arc<Store>) -> Usage {
        Usage {
            store,
            write: Mutex::new(()),
        }
    }

    fn frame_key(agreement: &str, day: NaiveDate, phy_payload: &[u8]) -> String {
        format!(
            "{agreement}\u{1}{}\u{1}{}",
            day_key(day),
            hex::encode(frame_hash(phy_payload))
        )
    }

    /// Whether this very frame was counted for `agreement` on the day of `at` or the day
    /// before (a frame sent again after a crash comes back within the hour).
    pub fn has(&self, agreement: &str, phy_payload: &[u8], at: DateTime<Utc>) -> Result<bool, LedgerError> {
        let day = at.date_naive();
        for d in [Some(day), day.pred_opt()].into_iter().flatten() {
            if self
                .store
                .get::<Frames>(&Self::frame_key(agreement, d, phy_payload))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts one frame for `agreement` and `device` unless that very frame was counted.
    /// Returns whether it was new.
    pub fn record(
        &self,
        agreement: &str,
        device: &str,
        kind: FrameKind,
        phy_payload: &[u8],
        airtime_us: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let fkey = Self::frame_key(agreement, at.date_naive(), phy_payload);
        let dkey = format!("{agreement}\u{1}{device}");
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.store.get::<Frames>(&fkey)?.is_some() {
            return Ok(false);
        }
        let f = FrameUse {
            device: device.to_string(),
            kind,
            bytes: phy_payload.len() as u32,
            airtime_us,
            at,
        };
        let mut c = self.store.get::<Devices>(&dkey)?.unwrap_or_default();
        c.first_seen = Some(c.first_seen.map_or(at, |t| t.min(at)));
        c.last_seen = Some(c.last_seen.map_or(at, |t| t.max(at)));
        match kind {
            FrameKind::Uplink => c.uplinks += 1,
            FrameKind::Downlink => c.downlinks += 1,
            FrameKind::Join => c.joins += 1,
        }
        c.bytes += f.bytes as u64;
        c.airtime_us += airtime_us as u64;
        c.months.insert(at.year() as u32 * 100 + at.month());
        let mut b = self.store.batch();
        b.put::<Frames>(&fkey, &f)?;
        b.put::<Devices>(&dkey, &c)?;
        self.store.write(b, Durability::Buffered)?;
        Ok(true)
    }

    /// Calls `f` with each device's counters under `agreement`, in key order, without
    /// holding them all.
    pub fn for_each_device(
        &self,
        agreement: &str,
        mut f: impl FnMut(&str, &DeviceCounters),
    ) -> Result<u64, LedgerError> {
        let prefix = format!("{agreement}\u{1}");
        let mut n = 0;
        for kv in self.store.range_from::<Devices>(&prefix)? {
            let (k, c) = kv?;
            let Some(device) = k.strip_prefix(&prefix) else {
                break;
            };
            f(device, &c);
            n += 1;
        }
        Ok(n)
    }

    /// Every device's counters under `agreement`.
    pub fn devices(&self, agreement: &str) -> Result<Vec<(String, DeviceCounters)>, LedgerError> {
        let prefix = format!("{agreement}\u{1}");
        let mut v = Vec::new();
        for kv in self.store.range_from::<Devices>(&prefix)? {
            let (k, c) = kv?;
            let Some(device) = k.strip_prefix(&prefix) else {
                break;
            };
            v.push((device.to_string(), c));
        }
        Ok(v)
    }

    /// The day's frames of `agreement`: totals, per device, and the Merkle root.
    pub fn day(&self, agreement: &str, day: NaiveDate) -> Result<DaySummary, LedgerError> {
        let prefix = format!("{agreement}\u{1}{}\u{1}", day_key(day));
        let mut devices: BTreeMap<String, Figures> = BTreeMap::new();
        let mut totals = Figures::default();
        let mut leaves = Vec::new();
        for kv in self.store.range_from::<Frames>(&prefix)? {
            let (k, f) = kv?;
            let Some(h) = k.strip_prefix(&prefix) else { break };
            let mut leaf = [0u8; 32];
            if hex::decode_to_slice(h, &mut leaf).is_ok() {
                leaves.push(leaf);
            }
            totals.add(&f);
            devices.entry(f.device.clone()).or_default().add(&f);
        }
        Ok(DaySummary {
            agreement: agreement.to_string(),
            day,
            totals,
            devices,
            merkle_root: merkle_root(leaves),
        })
    }
}
