//! `entente bench restart`: how long a real `entente node` takes to start (process
//! spawned until it listens) when its database holds many uplinks. Start-up must not
//! read them: the sequence ceiling replaces a scan, and the retention purge runs in the
//! background.
//!
//! The uplinks are written straight into the node's own database (sealed with its master
//! key, like the devices), as the network server stores them, then the node is started
//! from them: cleanly stopped rounds, then a round after `kill -9` (WAL replayed).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use entente_gateway::RxInfo;
use entente_lns::UplinkRecord;
use entente_lns::tables::{Devices, Uplinks};
use entente_model::{DevAddr, GatewayEui};
use entente_region::{Bandwidth, DataRate};
use entente_store::{Durability, Store};
use serde_json::{Value, json};

use crate::config::NodeConfig;
use crate::process::NodeProcess;

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Uplinks stored before the node starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub uplinks: u64,
    /// Devices they are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Clean restarts measured; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

fn uplink(seq: u64, device: &entente_lns::Device, at: chrono::DateTime<Utc>) -> UplinkRecord {
    UplinkRecord {
        seq,
        dev_eui: device.dev_eui,
        dev_addr: device.abp.as_ref().map_or(DevAddr(0), |a| a.dev_addr),
        fcnt: u32::try_from(seq).unwrap_or(u32::MAX),
        fport: Some(1),
        payload: vec![0x00, 0x40, 0xe2, 0x01, 0x00, 0x17],
        encrypted: false,
        confirmed: false,
        data_rate: 5,
        frequency_hz: 868_100_000,
        rx: vec![RxInfo {
            gateway: GatewayEui([0, 0x80, 0, 0, 0, 0, 0xa0, 1]),
            tmst: 1_000_000,
            time: Some(at),
            gps_time_ms: None,
            received_at: at,
            frequency_hz: 868_100_000,
            channel: 0,
            rf_chain: 0,
            data_rate: DataRate::lora(7, Bandwidth::Khz125),
            coding_rate: Some("4/5".into()),
            rssi: -97,
            snr: 4.5,
        }],
        received_at: at,
    }
}

/// Fills the node's database in `node_dir` with devices and uplinks.
fn fill(node_dir: &Path, a: &RestartArgs) -> Result<u64> {
    let cfg = NodeConfig::load(&node_dir.join("node.toml"))?;
    let sealer = crate::master_key::load(&cfg)?.sealer()?;
    let store = Store::open_sealed(&cfg.data_dir(), &crate::run::tables(), sealer)?;
    let devices: Vec<_> = (0..a.devices.max(1)).map(super::ingest::device_record).collect();
    let mut batch = store.batch();
    for d in &devices {
        batch.put::<Devices>(&d.dev_eui, d)?;
    }
    store.write(batch, Durability::Sync)?;
    let now = Utc::now();
    let mut batch = store.batch();
    for seq in 1..=a.uplinks {
        let d = &devices[(seq % devices.len() as u64) as usize];
        let at = now - chrono::TimeDelta::seconds(i64::try_from(a.uplinks - seq).unwrap_or(0));
        batch.put::<Uplinks>(&(d.dev_eui, seq), &uplink(seq, d, at))?;
        if batch.len() >= 10_000 {
            store.write(std::mem::replace(&mut batch, store.batch()), Durability::Buffered)?;
        }
    }
    store.write(batch, Durability::Sync)?;
    store.close()?;
    Ok(dir_bytes(&cfg.data_dir().join("db")))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn start(exe: &Path, dir: &Path) -> Result<(Duration, NodeProcess)> {
    let t = Instant::now();
    let node = NodeProcess::start(exe, dir).await?;
    Ok((t.elapsed(), node))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

pub async fn restart(a: RestartArgs) -> Result<Value> {
    let exe = std::env::current_exe().context("cannot find the entente executable")?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path();
    crate::init::run(&crate::init::InitArgs {
        dir,
        member: &"bench".parse()?,
        name: "restart bench",
        gateway_port: 0,
        api_port: 0,
    })?;
    let filled_at = Instant::now();
    let bytes = tokio::task::block_in_place(|| fill(dir, &a))?;
    let fill_secs = filled_at.elapsed().as_secs_f64();

    // The uplinks were written without the network server's sequence ceiling (it is its
    // own row): the first start reads the newest uplink once and writes the ceiling, as
    // a node upgraded from a store without one does. Every later start reads the ceiling.
    let (first, node) = start(&exe, dir).await?;
    node.stop().await?;
    let mut clean = Vec::new();
    for _ in 0..a.rounds.max(1) {
        let (took, node) = start(&exe, dir).await?;
        clean.push(took);
        node.stop().await?;
    }
    let (_, node) = start(&exe, dir).await?;
    node.kill9().await?;
    let (after_kill, node) = start(&exe, dir).await?;
    let stored = node.get_json("/v1/devices").await.ok();
    node.stop().await?;
    let mut sorted = clean.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    Ok(json!({
        "stored_uplinks": a.uplinks,
        "devices": a.devices,
        "database_bytes": bytes,
        "fill_seconds": (fill_secs * 10.0).round() / 10.0,
        "first_start_ms_without_ceiling": ms(first),
        "start_ms_clean": clean.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "median_start_ms_clean": ms(median),
        "start_ms_after_kill_9": ms(after_kill),
        "devices_listed_after_restart": stored.as_ref().and_then(|v| v["devices"].as_array().map(|l| l.len())),
    }))
}
