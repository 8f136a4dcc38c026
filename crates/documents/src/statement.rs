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
        diff = diff.saturating_add(x.abs_diff(y));
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
    // In u128: the figures of a peer's statement may be anything up to u64::MAX.
    u128::from(difference(a, b)) * 1000 <= u128::from(total) * u128::from(per_mille)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn summary(uplinks: u64, downlinks: u64, root: &str) -> DaySummary {
        let f = Figures {
            uplinks,
            downlinks,
            ..Figures::default()
        };
        DaySummary {
            agreement: "a".into(),
            day: NaiveDate::from_ymd_opt(2026, 5, 31).unwrap(),
            totals: f.clone(),
            devices: BTreeMap::from([("addr:26011BDA".into(), f)]),
            merkle_root: root.into(),
        }
    }

    /// A peer's statement carries whatever figures it likes: comparing it with ours
    /// saturates instead of overflowing (a panic in a debug build, a wrong answer in a
    /// release one).
    #[test]
    fn figures_near_u64_max_compare_without_overflow() {
        let (theirs, ours) = (summary(u64::MAX, u64::MAX, "ab"), summary(3, 0, "cd"));
        assert_eq!(theirs.totals.frames(), u64::MAX);
        assert_eq!(difference(&theirs, &ours), u64::MAX - 3);
        assert!(!within_tolerance(&theirs, &ours, 10));
        assert!(within_tolerance(&theirs, &ours, 1000));
        assert!(within_tolerance(&theirs, &theirs, 0));
    }
}
