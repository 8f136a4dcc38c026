//! `entente bench billing`: a year of billing for a million devices, from the usage
//! counters in RocksDB to signed ledger records: the catalogue, monthly pro rata, one pass
//! over the counters (streamed, never all in memory), and the yearly `nbO x taO` fee.
//! Prints the time and the peak resident memory of the billing itself.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use entente_ledger::billing::{self, UnitMonths};
use entente_ledger::chain::Kind;
use entente_ledger::policy::BillingPolicy;
use entente_ledger::usage::{DeviceCounters, Devices, Usage};
use entente_ledger::{Ledger, store as ledger_store, usage};
use entente_store::{Durability, Store};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct BillingArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub devices: u64,
    /// Runs of the billing over the same counters; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The policies directory (the repository's `policies/`).
    #[arg(long, default_value = "policies")]
    pub policies: std::path::PathBuf,
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resets the peak resident size so the next reading covers only what follows (Linux).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn billing(a: BillingArgs) -> Result<Value> {
    if a.devices == 0 || a.runs == 0 {
        bail!("devices and runs must be at least 1");
    }
    let policy = BillingPolicy::load(&a.policies, "smo-vdln/catalogue-2025-09")
        .context("the catalogue policy (pass --policies DIR)")?;
    let yearly = BillingPolicy::load(&a.policies, "tours-metropole/annual-declared")?;
    let tmp = tempfile::tempdir()?;
    let mut tables: Vec<&str> = usage::TABLES.to_vec();
    tables.extend(ledger_store::TABLES);
    let store = Arc::new(Store::open(tmp.path(), &tables)?);

    // The counters a year of traffic leaves: devices first heard across 2025-2026, some
    // silent before December, a third measuring 7 quantities (2 units).
    let agreement = "smo-tenants";
    let load_start = Instant::now();
    let year = 2026;
    let base = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .context("date")?;
    let mut batch = store.batch();
    for i in 0..a.devices {
        let first = base + TimeDelta::hours((i % 17_000) as i64);
        let last = if i % 10 == 0 {
            Utc.with_ymd_and_hms(2026, 6, 10, 8, 0, 0)
                .single()
                .context("date")?
        } else {
            Utc.with_ymd_and_hms(2026, 12, 31, 8, 0, 0)
                .single()
                .context("date")?
        };
        let c = DeviceCounters {
            first_seen: Some(first),
            last_seen: Some(last),
            uplinks: 365,
            bytes: 365 * 20,
            airtime_us: 365 * 61_696,
            months: (1..=12).map(|m| 202_600 + m).collect(),
            ..Default::default()
        };
        let kind = match i % 3 {
            0 => "water_metering",
            1 => "other",
            _ => "other7",
        };
        batch.put::<Devices>(&format!("{agreement}\u{1}{kind}:{i:016x}"), &c)?;
        if batch.len() >= 10_000 {
            store.write(std::mem::replace(&mut batch, store.batch()), Durability::Buffered)?;
        }
    }
    store.write(batch, Durability::Buffered)?;
    let load_secs = load_start.elapsed().as_secs_f64();

    let usage = Usage::new(store.clone());
    let key = SigningKey::from_bytes(&[7; 32]);
    let me: entente_model::MemberId = "smo-vdln".parse()?;
    let vk = key.verifying_key();
    let ledger = Ledger::new(me.clone(), key, store.clone(), Arc::new(move |_| Some(vk)))?;
    let mut runs = Vec::new();
    let mut last_invoice = None;
    for _ in 0..a.runs {
        reset_peak();
        let rss_before = status_kb("VmRSS:");
        let t = Instant::now();
        let mut sums = UnitMonths::new(&policy, year)?;
        let mut declared_on_1_january = 0u64;
        let jan1 = Utc
            .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .context("date")?;
        usage.for_each_device(agreement, |device, c| {
            let (case, q) = match device.split(':').next() {
                Some("water_metering") => ("water_metering", 1),
                Some("other7") => ("other", 7),
                _ => ("other", 1),
            };
            if let (Some(f), Some(l)) = (c.first_seen, c.last_seen) {
                sums.add(case, q, f, l);
                if f < jan1 {
                    declared_on_1_january += 1;
                }
            }
        })?;
        let now = Utc::now();
        let inv = billing::catalogue_invoice(
            &policy,
            agreement,
            "members hosted on the SMO node",
            &["network_access", "platform_transmission"],
            &sums,
            now,
        )?;
        let fee = billing::annual_declared(&yearly, agreement, "SMO", year, declared_on_1_january, now)?;
        let e1 = ledger.append(agreement, Kind::BillingRecord, &inv)?;
        let e2 = ledger.append(agreement, Kind::BillingRecord, &fee)?;
        let secs = t.elapsed().as_secs_f64();
        let peak = status_kb("VmHWM:");
        runs.push(json!({
            "seconds": (secs * 1000.0).round() / 1000.0,
            "devices_billed": sums.devices_billed,
            "peak_rss_mb": peak / 1024,
            "rss_before_mb": rss_before / 1024,
            "records_signed": [e1.seq, e2.seq],
        }));
        last_invoice = Some((inv, fee));
    }
    let mut secs: Vec<f64> = runs.iter().filter_map(|r| r["seconds"].as_f64()).collect();
    secs.sort_by(f64::total_cmp);
    let peak = runs
        .iter()
        .filter_map(|r| r["peak_rss_mb"].as_u64())
        .max()
        .unwrap_or(0);
    let (inv, fee) = last_invoice.context("no run")?;
    Ok(json!({
        "bench": "billing",
        "devices": a.devices,
        "year": year,
        "counters_loaded_in_seconds": (load_secs * 1000.0).round() / 1000.0,
        "runs": runs,
        "median_seconds": secs[secs.len() / 2],
        "peak_rss_mb": peak,
        "catalogue_invoice": {
            "lines": inv.lines.iter().map(|l| json!({"service": l.service, "use_case": l.use_case, "unit_months": l.quantity, "amount": l.amount.to_string()})).collect::<Vec<_>>(),
            "amount_excl_vat": inv.amount_excl_vat.to_string(),
            "vat": inv.vat.to_string(),
            "amount_incl_vat": inv.amount_incl_vat.to_string(),
        },
        "yearly_fee": {"objects": fee.lines[0].quantity, "amount_incl_vat": fee.amount_incl_vat.to_string()},
        "targets": {"seconds": 10, "peak_rss_mb": 2048},
    }))
}
