//! `entente bench sync`: bytes and time to reconcile two members after a partition.
//! Two members in one process (`entente_ledger::pair`: books, accounts, RocksDB on
//! disk), a convention declaring N devices, a history of daily signed statements
//! reconciled every day, then a partition of D days during which the host keeps signing;
//! the figures are those of the one reconciliation after it (books then ledgers, every
//! byte that the sync channels would carry).

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use entente_ledger::pair::Pair;
use entente_peering::protocol::SYNC_PAGE_BYTES;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Declared devices, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    pub devices: Vec<u64>,
    /// Partition lengths in days, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,30")]
    pub partition_days: Vec<u32>,
    /// Days of reconciled history before the partition.
    #[arg(long, default_value_t = 60)]
    pub history_days: u32,
    /// Devices heard per day (each one's figures are in the day's statement).
    #[arg(long, default_value_t = 200)]
    pub frames_per_day: u64,
}

fn run(devices: u64, partition: u32, a: &SyncArgs) -> Result<Value> {
    let (h, g) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let t = Instant::now();
    let p = Pair::open(h.path(), g.path(), devices).map_err(|e| anyhow!(e))?;
    let first = t.elapsed().as_secs_f64();
    let mut daily = Vec::new();
    for _ in 0..a.history_days {
        p.day(a.frames_per_day).map_err(|e| anyhow!(e))?;
        let t = Instant::now();
        p.sync().map_err(|e| anyhow!(e))?;
        daily.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for _ in 0..partition {
        p.day(a.frames_per_day).map_err(|e| anyhow!(e))?;
    }
    let t = Instant::now();
    let s = p.sync().map_err(|e| anyhow!(e))?;
    let secs = t.elapsed().as_secs_f64();
    if !p.converged().map_err(|e| anyhow!(e))? {
        bail!("the two members did not converge");
    }
    let dossier = serde_json::to_vec(&p.host.book.dossier(&p.agreement)?)?.len();
    daily.sort_by(f64::total_cmp);
    let median = daily.get(daily.len() / 2).copied().unwrap_or(0.0);
    Ok(json!({
        "devices": devices,
        "partition_days": partition,
        "dossier_json_bytes": dossier,
        "agreement_set_up_seconds": round(first),
        "daily_sync_median_ms": round(median),
        "reconcile": {
            "ms": round(secs * 1e3),
            "rounds": s.rounds,
            "bytes_sent": s.bytes_sent,
            "bytes_received": s.bytes_received,
            "largest_message_bytes": s.largest,
        },
    }))
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn sync(a: SyncArgs) -> Result<Value> {
    if a.devices.is_empty() || a.partition_days.is_empty() {
        bail!("at least one device count and one partition length");
    }
    let mut runs = Vec::new();
    for &d in &a.devices {
        for &p in &a.partition_days {
            runs.push(run(d, p, &a)?);
        }
    }
    Ok(json!({
        "bench": "sync",
        "history_days": a.history_days,
        "frames_per_day": a.frames_per_day,
        "page_bytes": SYNC_PAGE_BYTES,
        "codec_cap_bytes": entente_peering::protocol::MAX_SYNC_BYTES,
        "runs": runs,
    }))
}
