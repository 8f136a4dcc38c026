//! `entente bench roaming`: two real nodes (home and visited) as processes on loopback,
//! federated over libp2p, an emulated gateway on the visited node over real UDP, ABP
//! devices homed at the other node.
//!
//! - throughput: unconfirmed uplinks pushed at the visited gateway as fast as the home
//!   node accepts them (counted by the home node's `entente_lns_uplinks_accepted_total`);
//! - round trip: confirmed uplinks one at a time, from the push at the visited gateway to
//!   the ACK arriving back at that same gateway (visited dedup window + forward + home
//!   dedup window + processing + downlink request + TX_ACK).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use entente_gateway::json::PushData;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, GatewayEui};
use entente_sim::{DeviceSession, GatewayEmulator, SimDevice, rxpk};
use serde_json::{Value, json};

use crate::process::{NodeProcess, metric};

#[derive(Debug, clap::Args)]
pub struct RoamingArgs {
    /// Roaming devices (ABP, homed at the home node, heard only by the visited gateway).
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Uplinks per device in the throughput phase.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Confirmed uplinks timed one by one in the round-trip phase.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Home dedup window (ms); the visited one is 50 ms.
    #[arg(long, default_value_t = 200)]
    pub home_window_ms: u64,
    /// Visited dedup window (ms) for frames only forwarded.
    #[arg(long, default_value_t = 50)]
    pub visited_window_ms: u64,
    /// Background roamed uplinks per second while the round trips are sampled (0: none).
    #[arg(long, default_value_t = 5_000)]
    pub load_per_sec: u64,
}

const KEY: &str = "000102030405060708090A0B0C0D0E0F";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn configure(dir: &Path, block: &str, port: u16, roster: &Path, window: u64, visited: u64) -> Result<()> {
    let p = dir.join("node.toml");
    let text = std::fs::read_to_string(&p)?;
    let cfg = crate::init::federate(&text, block, roster, &format!("/ip4/127.0.0.1/tcp/{port}"))
        .replace(
            "# dedup_window = \"200ms\"",
            &format!("dedup_window = \"{window}ms\""),
        )
        .replace(
            "# visited_dedup_window = \"50ms\"",
            &format!("visited_dedup_window = \"{visited}ms\""),
        )
        .replace("# peer_rate_per_sec = 1000", "peer_rate_per_sec = 100000")
        .replace("# peer_burst = 5000", "peer_burst = 100000")
        .replace("level = \"info\"", "level = \"warn\"")
        .replace("# level = \"warn\"", "level = \"warn\"");
    std::fs::write(&p, cfg).with_context(|| format!("cannot write {}", p.display()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

pub async fn roaming(a: RoamingArgs) -> Result<Value> {
    if a.devices == 0 || a.rounds == 0 {
        bail!("devices and rounds must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the entente binary")?;
    let tmp = tempfile::tempdir()?;
    let roster = tmp.path().join("roster.toml");
    let sites = [
        ("smo-vdln", "SMO", "26020000/16"),
        ("tours-metropole", "Tours", "26010000/16"),
    ];
    let mut text = crate::roster::new("bench", "majority");
    let mut dirs = Vec::new();
    for (member, name, block) in sites {
        let dir = tmp.path().join(member);
        crate::init::run(&crate::init::InitArgs {
            dir: &dir,
            member: &member.parse()?,
            name,
            gateway_port: 0,
            api_port: 0,
        })?;
        let port = free_port()?;
        configure(&dir, block, port, &roster, a.home_window_ms, a.visited_window_ms)?;
        text.push_str(&crate::roster::member(&crate::roster::MemberArgs {
            config: dir.join("node.toml"),
            kind: "syndicate".into(),
            addresses: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
            dev_addr_blocks: vec![block.into()],
            join_eui_ranges: vec![],
            roams_on: if member == "smo-vdln" {
                vec!["tours-metropole".into()]
            } else {
                vec![]
            },
        })?);
        dirs.push(dir);
    }
    std::fs::write(&roster, &text)?;
    for d in &dirs {
        crate::roster::sign(&d.join("node.toml"), &roster)?;
    }
    let home = NodeProcess::start(&exe, &dirs[0]).await?;
    let visited = NodeProcess::start(&exe, &dirs[1]).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = visited.get_json("/v1/peers").await?;
        if v["peers"][0]["connected"] == true {
            break;
        }
        if Instant::now() > deadline {
            bail!("the nodes did not connect: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every bench device is declared under a transit convention at one message every ten
    // minutes, the most the conventions expect, so the policy admits what follows.
    let declared: Vec<DevEui> = (0..a.devices)
        .map(|i| DevEui((0x70b3_d5e7_0000_0000u64 + i as u64).to_be_bytes()))
        .collect();
    let agreement = crate::agreement::transit(
        "bench-transit",
        &"tours-metropole".parse()?,
        &"smo-vdln".parse()?,
        &declared,
        144,
        chrono::Utc::now() - chrono::TimeDelta::days(1),
    );
    crate::agreement::establish(&home, &visited, &agreement).await?;
    let gw_eui = GatewayEui([0, 0x80, 0, 0, 0xbe, 0, 0, 1]);
    visited
        .post_json(
            "/v1/gateways",
            &json!({"eui": gw_eui.to_string(), "name": "visited gw"}),
        )
        .await?;
    let gw = GatewayEmulator::connect(visited.listening.gateway, gw_eui).await?;
    gw.pull(Duration::from_secs(5)).await?;
    // A second gateway for the round trips: the throughput phase's downlinks spend the
    // first one's duty cycle (1 % per hour), as they would on air.
    let rtt_eui = GatewayEui([0, 0x80, 0, 0, 0xbe, 0, 0, 2]);
    visited
        .post_json(
            "/v1/gateways",
            &json!({"eui": rtt_eui.to_string(), "name": "visited gw 2"}),
        )
        .await?;
    let rtt_gw = GatewayEmulator::connect(visited.listening.gateway, rtt_eui).await?;
    rtt_gw.pull(Duration::from_secs(5)).await?;

    let key: AesKey = KEY.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut csv = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey\n".to_string();
    let mut sims = Vec::new();
    for i in 0..a.devices {
        let eui = DevEui((0x70b3_d5e7_0000_0000u64 + i as u64).to_be_bytes());
        let addr = DevAddr(0x2602_0000 + i as u32);
        csv.push_str(&format!(
            "meter {i};SN{i};NONE;47.39;0.69;SERVICE;BENCH/eau;{eui};A;1.0.3;ABP;{addr};{KEY};{KEY}\n"
        ));
        sims.push(SimDevice::abp(
            MacVersion::V1_0_3,
            DeviceClass::A,
            eui,
            DeviceSession::abp_10(addr, key, key),
        ));
    }
    let r = home
        .api(reqwest::Method::POST, "/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("import failed: {}", r.text().await?);
    }

    // Throughput.
    let accepted = |t: &str| metric(t, "entente_lns_uplinks_accepted_total").unwrap_or(0.0) as u64;
    let mut rounds = Vec::new();
    let mut tmst = 0u32;
    for round in 0..a.rounds {
        let before = accepted(&home.metrics().await?);
        let mut datagrams = Vec::with_capacity(sims.len());
        for d in sims.iter_mut() {
            tmst = tmst.wrapping_add(10);
            let phy = d.uplink(1, &[round as u8, 0x42], false, 5, 0)?;
            datagrams.push(PushData {
                rxpk: vec![rxpk(&phy, 868.1, "SF7BW125", -90, 5.0, tmst)],
                stat: None,
            });
        }
        let start = Instant::now();
        for (n, dg) in datagrams.iter().enumerate() {
            gw.push_no_wait(dg).await?;
            if n % 200 == 199 {
                tokio::task::yield_now().await;
            }
        }
        let want = before + sims.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut now_accepted = before;
        while now_accepted < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            now_accepted = accepted(&home.metrics().await?);
        }
        let secs = start.elapsed().as_secs_f64();
        let got = now_accepted - before;
        rounds.push(json!({
            "round": round + 1,
            "sent": sims.len(),
            "accepted_at_home": got,
            "lost": sims.len() as u64 - got.min(sims.len() as u64),
            "seconds": secs,
            "roamed_uplinks_per_second": (got as f64 / secs).round(),
        }));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // Let the downlinks the throughput phase caused go out, then forget them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while gw.next_downlink(Duration::from_millis(200)).await.is_ok() {}

    // Background load through the first gateway while the round trips are sampled through
    // the second: the devices beyond the first 50 send unconfirmed uplinks at the rate.
    const RTT_DEVICES: usize = 50;
    let load_sims = if sims.len() > RTT_DEVICES {
        sims.split_off(RTT_DEVICES)
    } else {
        Vec::new()
    };
    let stop_load = tokio_util::sync::CancellationToken::new();
    let load_sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load_task = (a.load_per_sec > 0 && !load_sims.is_empty()).then(|| {
        let (stop, sent, rate) = (stop_load.clone(), load_sent.clone(), a.load_per_sec);
        let mut sims = load_sims;
        let mut tmst = tmst.wrapping_add(1_000_000_000);
        tokio::spawn(async move {
            let per_tick = rate.div_ceil(1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * per_tick / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0usize;
            while !stop.is_cancelled() {
                tick.tick().await;
                for _ in 0..per_tick {
                    let n = sims.len();
                    let d = &mut sims[i % n];
                    i += 1;
                    tmst = tmst.wrapping_add(10);
                    let Ok(phy) = d.uplink(1, &[0x5a], false, 5, 0) else {
                        continue;
                    };
                    let body = PushData {
                        rxpk: vec![rxpk(&phy, 868.1, "SF7BW125", -90, 5.0, tmst)],
                        stat: None,
                    };
                    if gw.push_no_wait(&body).await.is_ok() {
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            while gw.next_downlink(Duration::from_millis(1)).await.is_ok() {}
        })
    });
    let load_start = Instant::now();
    let accepted_before_rtt = accepted(&home.metrics().await?);
    // Round trip, one confirmed uplink at a time.
    let mut rtts = Vec::new();
    let mut missed = 0;
    for s in 0..a.samples {
        let n = sims.len();
        let d = &mut sims[s % n];
        let addr = d.session.as_ref().map(|x| x.dev_addr);
        tmst = tmst.wrapping_add(3_000_000);
        let phy = d.uplink(1, &[0xac], true, 5, 0)?;
        let body = PushData {
            rxpk: vec![rxpk(&phy, 868.1, "SF7BW125", -90, 5.0, tmst)],
            stat: None,
        };
        let start = Instant::now();
        rtt_gw.push_no_wait(&body).await?;
        let deadline = start + Duration::from_secs(3);
        let mut got = false;
        while Instant::now() < deadline {
            match rtt_gw.next_downlink(deadline - Instant::now()).await {
                Ok(dl)
                    if dl.phy_payload.len() >= 5
                        && Some(DevAddr(u32::from_le_bytes([
                            dl.phy_payload[1],
                            dl.phy_payload[2],
                            dl.phy_payload[3],
                            dl.phy_payload[4],
                        ]))) == addr =>
                {
                    rtts.push(start.elapsed().as_secs_f64() * 1000.0);
                    let _ = d.receive(&dl.phy_payload);
                    got = true;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        missed += usize::from(!got);
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    stop_load.cancel();
    if let Some(t) = load_task {
        let _ = t.await;
    }
    let load_accepted = accepted(&home.metrics().await?) - accepted_before_rtt;
    let load_rate = (load_sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / load_secs).round();
    rtts.sort_by(f64::total_cmp);
    let windows_ms = a.visited_window_ms + a.home_window_ms;
    let measured: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r["roamed_uplinks_per_second"].as_f64())
        .collect();
    let mut sorted = measured.clone();
    sorted.sort_by(f64::total_cmp);
    home.stop().await?;
    visited.stop().await?;
    Ok(json!({
        "bench": "roaming",
        "devices": a.devices,
        "throughput_rounds": rounds,
        "median_roamed_uplinks_per_second": sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        "round_trip": {
            "samples": rtts.len(),
            "missed": missed,
            "p50_ms": percentile(&rtts, 0.5),
            "p99_ms": percentile(&rtts, 0.99),
            "dedup_windows_ms": windows_ms,
            "p50_beyond_windows_ms": (percentile(&rtts, 0.5) - windows_ms as f64).max(0.0),
            "p99_beyond_windows_ms": (percentile(&rtts, 0.99) - windows_ms as f64).max(0.0),
            "visited_window_ms": a.visited_window_ms,
            "home_window_ms": a.home_window_ms,
            "background_load_sent_per_second": load_rate,
            "background_accepted_at_home": load_accepted,
        },
    }))
}
