//! `entente bench ingest`: uplinks per second through the full home pipeline — UDP in,
//! Semtech parsing, dedup window, MIC, FCnt, RocksDB write — with the loss counted.
//!
//! Everything is real and in one process: the gateway server on a loopback UDP port,
//! RocksDB in a temporary directory, emulated gateways sending pre-encoded datagrams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use entente_gateway::json::PushData;
use entente_gateway::protocol::{self, Upstream};
use entente_gateway::{GatewayMetrics, GatewayServer, NewGateway, Registry, ServerConfig};
use entente_lns::{
    AbpKeys, AesKey, Device, DeviceClass, GeolocationMode, Lifecycle, LnsConfig, MacVersion, NetworkServer,
    Profile,
};
use entente_model::{DevAddr, DevEui, GatewayEui, MemberId, SharedClock, SystemClock};
use entente_sim::{DeviceSession, SimDevice, rxpk};
use entente_store::Store;
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Simulated devices (ABP, LoRaWAN 1.0.3 and 1.1 alternately).
    #[arg(long, default_value_t = 50_000)]
    pub devices: usize,
    /// Uplinks per device; the first round is a warm-up (first-uplink MAC requests).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Gateways the traffic is spread over.
    #[arg(long, default_value_t = 4)]
    pub gateways: usize,
    /// Datagrams allowed in flight before the sender waits (keeps the kernel buffer from
    /// overflowing: the benchmark measures the node, not the socket buffer).
    #[arg(long, default_value_t = 4_000)]
    pub window: u64,
}

fn key(i: usize, salt: u8) -> AesKey {
    let mut k = [salt; 16];
    k[..8].copy_from_slice(&(i as u64).to_be_bytes());
    AesKey(k)
}

pub async fn ingest(a: IngestArgs) -> Result<Value> {
    if a.devices == 0 || a.rounds == 0 || a.gateways == 0 {
        bail!("devices, rounds and gateways must be at least 1");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let clock: SharedClock = Arc::new(SystemClock);
    let tables: Vec<&'static str> = Registry::TABLES
        .iter()
        .chain(entente_lns::tables::ALL)
        .copied()
        .collect();
    let store = Arc::new(Store::open(dir.path(), &tables)?);
    let member: MemberId = "bench".parse()?;
    let registry = Arc::new(Registry::load(
        store.clone(),
        clock.clone(),
        member,
        Duration::from_secs(90),
    )?);
    let mut prom = prometheus_client::registry::Registry::default();
    let gm = GatewayMetrics::register(&mut prom);
    let server_cfg = ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        frame_queue: 1 << 20,
        ..ServerConfig::default()
    };
    let (server, frames) = GatewayServer::bind(&server_cfg, registry.clone(), gm.clone()).await?;
    let lns_cfg = LnsConfig {
        dev_addr_block: "26000000/8".parse().map_err(anyhow::Error::msg)?,
        ..LnsConfig::default()
    };
    let lns = Arc::new(NetworkServer::new(store.clone(), server.clone(), lns_cfg, clock)?);
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.clone().run(shutdown.clone()));
    let no_peers = tokio::sync::mpsc::channel(1).1;
    let lns_task = tokio::spawn(lns.clone().run(frames, no_peers, shutdown.clone()));

    let gws: Vec<GatewayEui> = (0..a.gateways)
        .map(|i| GatewayEui([0, 0x80, 0, 0, 0xbe, 0, 0, i as u8]))
        .collect();
    for (i, eui) in gws.iter().enumerate() {
        registry.create(NewGateway {
            eui: *eui,
            name: format!("bench-{i}"),
            owner: None,
            position: None,
        })?;
    }

    // Devices, provisioned in one batch as an import would.
    let mut records = Vec::with_capacity(a.devices);
    let mut sims = Vec::with_capacity(a.devices);
    for i in 0..a.devices {
        let v11 = i % 2 == 1;
        let version = if v11 { MacVersion::V1_1 } else { MacVersion::V1_0_3 };
        let eui = DevEui((0x70b3_d5e7_0000_0000u64 + i as u64).to_be_bytes());
        let addr = DevAddr(0x2600_0000 + i as u32);
        let (f, s, e, app) = (key(i, 1), key(i, 2), key(i, 3), key(i, 4));
        let (s, e) = if v11 { (s, e) } else { (f, f) };
        records.push(Device {
            dev_eui: eui,
            name: format!("meter {i}"),
            serial: format!("SN{i}"),
            reference: String::new(),
            equipment: "water meter".into(),
            address: String::new(),
            geolocation_mode: GeolocationMode::None,
            position: None,
            lifecycle: Lifecycle::Service,
            group: "bench".into(),
            sub_group: String::new(),
            offer: String::new(),
            join_eui: None,
            app_key: None,
            nwk_key: None,
            abp: Some(AbpKeys {
                dev_addr: addr,
                nwk_s_key: f,
                s_nwk_s_int_key: v11.then_some(s),
                nwk_s_enc_key: v11.then_some(e),
                app_s_key: Some(app),
            }),
            member_keeps_app_s_key: false,
            profile: Profile {
                mac_version: version,
                ..Profile::default()
            },
        });
        sims.push(SimDevice::abp(
            version,
            DeviceClass::A,
            eui,
            DeviceSession {
                dev_addr: addr,
                f_nwk_s_int_key: f,
                s_nwk_s_int_key: s,
                nwk_s_enc_key: e,
                app_s_key: app,
                fcnt_up: 0,
                last_n_fcnt_down: None,
                last_a_fcnt_down: None,
                rx_delay: 1,
                rx1_dr_offset: 0,
                rx2_dr: 0,
                opt_neg: v11,
            },
        ));
    }
    for chunk in records.chunks(5_000) {
        lns.create_devices(chunk)?;
    }

    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let target = server.local_addr()?;
    let mut rounds = Vec::new();
    for round in 0..a.rounds {
        // Encode every datagram first: the clock measures the node, not the encoder.
        let mut datagrams = Vec::with_capacity(a.devices);
        for (i, d) in sims.iter_mut().enumerate() {
            let phy = d.uplink(1, &[0x01, (round & 0xff) as u8, 0x42, 0x17], false, 5, 0)?;
            let body = PushData {
                rxpk: vec![rxpk(
                    &phy,
                    868.1,
                    "SF7BW125",
                    -80,
                    6.5,
                    (round * 1_000_000 + i) as u32,
                )],
                stat: None,
            };
            let json = serde_json::to_vec(&body)?;
            let mut out = Vec::with_capacity(json.len() + 12);
            let token = ((i & 0xffff) as u16).to_be_bytes();
            protocol::encode_upstream(
                &Upstream::PushData {
                    version: 2,
                    token,
                    eui: gws[i % gws.len()],
                    json: &json,
                },
                &mut out,
            );
            datagrams.push(out);
        }
        let accepted_before = lns.metrics.uplinks_accepted.get();
        let received_before = gm.frames_received.get();
        let start = Instant::now();
        for (n, dg) in datagrams.iter().enumerate() {
            while (n as u64) > (gm.frames_received.get() - received_before) + a.window {
                tokio::task::yield_now().await;
            }
            sock.send_to(dg, target).await?;
        }
        let sent_at = start.elapsed();
        let expected = accepted_before + a.devices as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while lns.metrics.uplinks_accepted.get() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = start.elapsed();
        let accepted = lns.metrics.uplinks_accepted.get() - accepted_before;
        let rate = accepted as f64 / elapsed.as_secs_f64();
        rounds.push(json!({
            "round": round + 1,
            "warm_up": round == 0 && a.rounds > 1,
            "sent": a.devices,
            "accepted": accepted,
            "lost": a.devices as u64 - accepted.min(a.devices as u64),
            "send_seconds": sent_at.as_secs_f64(),
            "seconds": elapsed.as_secs_f64(),
            "uplinks_per_second": rate.round(),
        }));
        // Let the downlinks the first round triggered settle before measuring again.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shutdown.cancel();
    let _ = server_task.await;
    let _ = lns_task.await;
    let measured: Vec<f64> = rounds
        .iter()
        .filter(|r| r["warm_up"] == false)
        .filter_map(|r| r["uplinks_per_second"].as_f64())
        .collect();
    let mut sorted = measured.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let lost: u64 = rounds.iter().filter_map(|r| r["lost"].as_u64()).sum();
    Ok(json!({
        "bench": "ingest",
        "devices": a.devices,
        "gateways": a.gateways,
        "dedup_window_ms": 200,
        "pipeline": "UDP -> Semtech parse -> dedup -> MIC -> FCnt -> RocksDB (WAL) ",
        "rounds": rounds,
        "median_uplinks_per_second": median,
        "lost": lost,
    }))
}
