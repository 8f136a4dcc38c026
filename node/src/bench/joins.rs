//! `entente bench joins`: a join storm on a real `entente node` while data uplinks flow.
//! OTAA devices send their JoinRequests over `--seconds` (2 000 in 10 s by default) while
//! ABP devices send `--uplinks-per-sec` data uplinks (a share of them confirmed, which
//! the network server must ACK), all through emulated gateways over real UDP.
//!
//! An answer made its window when the gateway got its PULL_RESP, timed for RX1 or RX2 of
//! the frame it answers (`tmst` + 1 s / 2 s for data, + 5 s / 6 s for a JoinRequest),
//! before that moment on the gateway's own clock: `tmst` here runs with the wall clock
//! from the bench's start, so the check is the PULL_RESP's arrival against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use entente_gateway::json::PushData;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui};
use entente_sim::{DeviceSession, GatewayEmulator, SimDevice, rxpk};
use serde_json::{Value, json};

use crate::process::{NodeProcess, metric};

const KEY: &str = "000102030405060708090A0B0C0D0E0F";
const JOIN_EUI: &str = "70B3D57ED0000000";
const HEADER: &str = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;App EUI;App Key;NwkKey;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey\n";

#[derive(Debug, clap::Args)]
pub struct JoinsArgs {
    /// OTAA devices, each joining once during the storm.
    #[arg(long, default_value_t = 2_000)]
    pub joins: usize,
    /// How long the storm lasts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Data uplinks per second meanwhile, from ABP devices.
    #[arg(long, default_value_t = 2_000)]
    pub uplinks_per_sec: u64,
    /// One data uplink in this many is confirmed (needs an ACK in RX1 or RX2).
    #[arg(long, default_value_t = 10)]
    pub confirmed_every: u64,
    /// Emulated gateways (each has its own duty-cycle budget, as on air).
    #[arg(long, default_value_t = 100)]
    pub gateways: usize,
}

/// What a frame that needs an answer expects: at which gateway, for which `tmst`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Join,
    Confirmed,
}

impl Kind {
    fn delays(self) -> [u32; 2] {
        match self {
            Kind::Join => [5_000_000, 6_000_000],
            Kind::Confirmed => [1_000_000, 2_000_000],
        }
    }
}

/// PULL_RESPs each gateway received: `tmst` -> when it arrived.
type Received = Arc<Mutex<HashMap<(usize, u32), Instant>>>;

async fn provision(
    node: &NodeProcess,
    a: &JoinsArgs,
    abp: usize,
) -> Result<(Vec<SimDevice>, Vec<SimDevice>)> {
    let key: AesKey = KEY.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let join_eui: JoinEui = JOIN_EUI.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut otaa = Vec::new();
    let mut data = Vec::new();
    let mut csv = HEADER.to_string();
    for i in 0..a.joins {
        let eui = DevEui((0x70b3_d5e7_1000_0000u64 + i as u64).to_be_bytes());
        csv.push_str(&format!(
            "meter {i};SN{i};NONE;47.39;0.69;SERVICE;BENCH/eau;{eui};A;{JOIN_EUI};{KEY};;1.0.3;OTAA;;;\n"
        ));
        otaa.push(SimDevice::otaa(
            MacVersion::V1_0_3,
            DeviceClass::A,
            eui,
            join_eui,
            key,
            key,
        ));
    }
    for i in 0..abp {
        let eui = DevEui((0x70b3_d5e7_2000_0000u64 + i as u64).to_be_bytes());
        let addr = DevAddr(0x2600_1000 + i as u32);
        csv.push_str(&format!(
            "light {i};SL{i};NONE;47.39;0.69;SERVICE;BENCH/eclairage;{eui};A;;;;1.0.3;ABP;{addr};{KEY};{KEY}\n"
        ));
        data.push(SimDevice::abp(
            MacVersion::V1_0_3,
            DeviceClass::A,
            eui,
            DeviceSession::abp_10(addr, key, key),
        ));
    }
    let r = node
        .api(reqwest::Method::POST, "/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .timeout(Duration::from_secs(300))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("import failed: {}", r.text().await?);
    }
    Ok((otaa, data))
}

async fn gateways(node: &NodeProcess, n: usize, received: &Received) -> Result<Vec<Arc<GatewayEmulator>>> {
    let mut gws = Vec::new();
    for i in 0..n {
        let eui = GatewayEui([0, 0x80, 0, 0, 0xbe, 0x01, (i >> 8) as u8, i as u8]);
        node.post_json(
            "/v1/gateways",
            &json!({"eui": eui.to_string(), "name": format!("gw {i}")}),
        )
        .await?;
        let gw = Arc::new(GatewayEmulator::connect(node.listening.gateway, eui).await?);
        gw.pull(Duration::from_secs(5)).await?;
        let (g, received) = (gw.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok(d) = g.next_downlink(Duration::from_secs(30)).await {
                if let Some(t) = d.txpk.tmst {
                    received
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((i, t), Instant::now());
                }
            }
        });
        gws.push(gw);
    }
    Ok(gws)
}

pub async fn joins(a: JoinsArgs) -> Result<Value> {
    if a.joins == 0 || a.seconds == 0 || a.gateways == 0 || a.confirmed_every == 0 {
        bail!("joins, seconds, gateways and confirmed-every must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the entente executable")?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    crate::init::run(&crate::init::InitArgs {
        dir,
        member: &"bench".parse()?,
        name: "join storm bench",
        gateway_port: 0,
        api_port: 0,
    })?;
    let cfg = dir.join("node.toml");
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(&cfg, text.replace("level = \"info\"", "level = \"warn\""))?;
    let node = NodeProcess::start(&exe, dir).await?;
    // Each ABP device sends once a second: as many devices as uplinks per second.
    let abp = usize::try_from(a.uplinks_per_sec.max(1))?;
    let (mut otaa, mut data) = provision(&node, &a, abp).await?;
    let received: Received = Arc::default();
    let gws = gateways(&node, a.gateways, &received).await?;

    let start = Instant::now();
    let tmst_of = |at: Instant| 1_000_000u32.wrapping_add(at.duration_since(start).as_micros() as u32);
    let storm = Duration::from_secs(a.seconds);
    let per_tick = Duration::from_millis(1);
    let uplinks_per_tick = a.uplinks_per_sec as f64 / 1000.0;
    let joins_per_tick = a.joins as f64 / storm.as_millis() as f64;
    let (mut sent_up, mut sent_joins, mut n) = (0u64, 0usize, 0usize);
    let mut expected: Vec<(Kind, usize, u32, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(per_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let before = metric(&node.metrics().await?, "entente_lns_uplinks_accepted_total").unwrap_or(0.0);
    while start.elapsed() < storm {
        tick.tick().await;
        let ticks = start.elapsed().as_secs_f64() * 1000.0;
        while (sent_up as f64) < ticks * uplinks_per_tick {
            let d = &mut data[(sent_up as usize) % abp];
            let confirmed = sent_up % a.confirmed_every == 0;
            let phy = d.uplink(1, &[0x11, 0x22, 0x33], confirmed, 5, 0)?;
            let g = n % gws.len();
            n += 1;
            let now = Instant::now();
            let body = PushData {
                rxpk: vec![rxpk(&phy, 868.1, "SF7BW125", -80, 6.0, tmst_of(now))],
                stat: None,
            };
            gws[g].push_no_wait(&body).await?;
            if confirmed {
                expected.push((Kind::Confirmed, g, tmst_of(now), now));
            }
            sent_up += 1;
        }
        while (sent_joins as f64) < ticks * joins_per_tick && sent_joins < otaa.len() {
            let phy = otaa[sent_joins].join_request();
            let g = n % gws.len();
            n += 1;
            let now = Instant::now();
            let body = PushData {
                rxpk: vec![rxpk(&phy, 868.3, "SF7BW125", -80, 6.0, tmst_of(now))],
                stat: None,
            };
            gws[g].push_no_wait(&body).await?;
            expected.push((Kind::Join, g, tmst_of(now), now));
            sent_joins += 1;
        }
    }
    let sending = start.elapsed();
    // The last JoinRequest's RX2 is 6 s after it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = metric(&node.metrics().await?, "entente_lns_uplinks_accepted_total").unwrap_or(0.0);
    let got = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut tally: HashMap<(Kind, &str), u64> = HashMap::new();
    for (kind, g, tmst, _) in &expected {
        let outcome = kind
            .delays()
            .iter()
            .find_map(|d| {
                let t = tmst.wrapping_add(*d);
                got.get(&(*g, t)).map(|arrived| {
                    let due = start + Duration::from_micros(u64::from(t.wrapping_sub(1_000_000)));
                    if *arrived <= due { "in_time" } else { "late" }
                })
            })
            .unwrap_or("missing");
        *tally.entry((*kind, outcome)).or_default() += 1;
    }
    let share = |k: Kind| {
        let all: u64 = tally.iter().filter(|((kk, _), _)| *kk == k).map(|(_, v)| v).sum();
        let ok = tally.get(&(k, "in_time")).copied().unwrap_or(0);
        if all == 0 {
            0.0
        } else {
            (ok as f64 * 10_000.0 / all as f64).round() / 100.0
        }
    };
    let count = |k: Kind, o: &str| tally.get(&(k, o)).copied().unwrap_or(0);
    let joins_accepted = metric(&node.metrics().await?, "entente_lns_joins_accepted_total");
    node.stop().await?;
    Ok(json!({
        "storm_seconds": (sending.as_secs_f64() * 100.0).round() / 100.0,
        "join_requests_sent": sent_joins,
        "data_uplinks_sent": sent_up,
        "data_uplinks_per_sec_sent": (sent_up as f64 / sending.as_secs_f64()).round(),
        "data_uplinks_accepted": after - before,
        "joins_accepted_by_node": joins_accepted,
        "join_accepts": {"in_time": count(Kind::Join, "in_time"), "late": count(Kind::Join, "late"), "missing": count(Kind::Join, "missing")},
        "join_accepts_in_window_percent": share(Kind::Join),
        "class_a_acks": {"in_time": count(Kind::Confirmed, "in_time"), "late": count(Kind::Confirmed, "late"), "missing": count(Kind::Confirmed, "missing")},
        "class_a_acks_in_window_percent": share(Kind::Confirmed),
        "gateways": a.gateways,
    }))
}
