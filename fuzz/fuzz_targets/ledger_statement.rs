//! Arbitrary bytes as the body of a ledger record (JSON, as `Entry::body_json` reads a
//! peer's): a usage statement, compared as the guest compares the host's with its own
//! count of the day (`statement::within_tolerance`, `difference`, and the `dispute` it
//! records when they differ), or a dispute. Whatever figures a peer writes, the
//! comparison answers without overflow, and a statement is within any tolerance of
//! itself.

#![no_main]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use entente_documents::statement::{self, Dispute, UsageStatement};
use entente_documents::usage::{DaySummary, Figures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<UsageStatement>(data) {
        let ours = ours(s.day);
        for per_mille in [0, 10, 1000, u32::MAX] {
            assert!(statement::within_tolerance(&s.summary, &s.summary, per_mille));
            if !statement::within_tolerance(&s.summary, &ours, per_mille) {
                let d = statement::dispute(&s, &s.serving, 0, "00", &s.counterparty, &ours, per_mille);
                assert!(d.devices.len() <= 1000, "{} devices listed", d.devices.len());
            }
        }
        let _ = statement::difference(&s.summary, &ours);
    }
    let _ = serde_json::from_slice::<Dispute>(data);
});

/// Our own count of the day: one device, a few frames.
fn ours(day: NaiveDate) -> DaySummary {
    let f = Figures {
        uplinks: 140,
        downlinks: 1,
        joins: 0,
        bytes: 3243,
        airtime_us: 8_699_136,
    };
    DaySummary {
        agreement: "tours-smo-2026".into(),
        day,
        totals: f.clone(),
        devices: BTreeMap::from([("addr:26011BDA".to_string(), f)]),
        merkle_root: "cd".repeat(32),
    }
}
