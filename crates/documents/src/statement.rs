//! Usage statements: the serving side signs its count of a day, the other side compares it
//! with its own and countersigns when the difference is within the agreement's tolerance;
//! otherwise it records a dispute with both figures for the committee. Nothing is ever
//! overwritten: the statement stays as signed, the dispute sits beside it.

use chrono::NaiveDate;
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::usage::{DaySummary, Figures};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageStatement {
    pub agreement: String,
    pub day: NaiveDate,
    /// The party whose network carried the frames (the host) and the other.
    pub serving: MemberId,
    pub counterparty: MemberId,
    pub summary: DaySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDifference {
    pub device: String,
    pub statement: Figures,
    pub ours: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    pub agreement: String,
    pub day: NaiveDate,
    pub statement_issuer: MemberId,
    pub statement_seq: u64,
    pub statement_hash: String,
    pub raised_by: MemberId,
    pub tolerance_per_mille: u32,
    pub statement_totals: Figures,
    pub our_totals: Figures,
    pub statement_merkle_root: String,
    pub our_merkle_root: String,
    /// Devices whose figures differ (at most 1 000 listed).
    pub devices: Vec<DeviceDifference>,
}

/// Frames counted differently, per device (a frame one side has and the other lacks).
pub fn difference(a: &DaySummary, b: &DaySummary) -> u64 {
    let mut diff = 0u64;
    let keys: std::collections::BTreeSet<&String> = a.devices.keys().chain(b.devices.keys()).collect();
    for k in keys {
        let x = a.devices.get(k).map_or(0, |f| f.frames());
        let y = b.devices.get(k).map_or(0, |f| f.frames());
        diff += x.abs_diff(y);
    }
    diff
}

/// Within tolerance: the differing frames are at most `per_mille` of the larger count
/// (identical Merkle roots always are).
pub fn within_tolerance(a: &DaySummary, b: &DaySummary, per_mille: u32) -> bool {
    if a.merkle_root == b.merkle_root {
        return true;
    }
    let total = a.totals.frames().max(b.totals.frames());
    difference(a, b) * 1000 <= total * per_mille as u64
}

/// The dispute `raised_by` records against a statement it cannot countersign.
pub fn dispute(
    s: &UsageStatement,
    issuer: &MemberId,
    seq: u64,
    hash: &str,
    raised_by: &MemberId,
    ours: &DaySummary,
    per_mille: u32,
) -> Dispute {
    let keys: std::collections::BTreeSet<&String> =
        s.summary.devices.keys().chain(ours.devices.keys()).collect();
    let devices = keys
        .into_iter()
        .filter_map(|k| {
            let a = s.summary.devices.get(k).cloned().unwrap_or_default();
            let b = ours.devices.get(k).cloned().unwrap_or_default();
            (a != b).then(|| DeviceDifference {
                device: k.clone(),
                statement: a,
                ours: b,
            })
        })
        .take(1000)
        .collect();
    Dispute {
        agreement: s.agreement.clone(),
        day: s.day,
        statement_issuer: issuer.clone(),
        statement_seq: seq,
        statement_hash: hash.to_string(),
        raised_by: raised_by.clone(),
        tolerance_per_mille: per_mille,
        statement_totals: s.summary.totals.clone(),
        our_totals: ours.totals.clone(),
        statement_merkle_root: s.summary.merkle_root.clone(),
        our_merkle_root: ours.merkle_root.clone(),
        devices,
    }
}
