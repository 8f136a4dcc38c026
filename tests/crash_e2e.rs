//! Nothing acknowledged is lost: roamed traffic at a steady rate (500 uplinks/s of 100
//! SMO street lights, heard by a Tours gateway) while first the home node (SMO) and then
//! the visited node (Tours) is killed with -9 and started again. Afterwards every frame is
//! at home exactly once: every frame the gateway had a PUSH_ACK for, whichever side was
//! dying then (the visited node journals a datagram's frames before it acknowledges
//! them); both sides' usage counters are equal, device for device.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use entente::process::NodeProcess;
use entente_gateway::json::PushData;
use entente_lns::DeviceClass;
use entente_model::{DevAddr, DevEui};
use entente_sim::{GatewayEmulator, SimDevice, rxpk};
use support::federation::*;
use support::*;
use tokio::sync::Mutex;

const DEVICES: usize = 100;
/// Uplinks per second from the gateway.
const RATE: u64 = 500;
/// Frames acknowledged this long before the visited node's kill -9 are reported apart:
/// the ones a crash would take if acknowledging came before keeping.
const LAST_MOMENTS: Duration = Duration::from_millis(250);
const AGREEMENT: &str = "tours-metropole-smo-fleet";

fn eui(i: usize) -> DevEui {
    DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 0x0a, i as u8])
}

fn addr(i: usize) -> DevAddr {
    DevAddr(0x2602_0100 + i as u32)
}

/// A frame the gateway had a PUSH_ACK for: which device, which counter, when.
#[derive(Debug, Clone, Copy)]
struct Acked {
    device: usize,
    fcnt: u32,
    at: Instant,
}

struct Load {
    devices: Vec<SimDevice>,
    next: usize,
    tmst: u32,
    acked: Vec<Acked>,
}

/// Sends at [`RATE`] through `gw` for `dur` or until `stop`; a frame whose PUSH_ACK does
/// not come (the node is dead) is not acknowledged.
async fn send(load: &Mutex<Load>, gw: &GatewayEmulator, dur: Duration, stop: &AtomicBool) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + dur;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut l = load.lock().await;
        let i = l.next % DEVICES;
        l.next += 1;
        l.tmst = l.tmst.wrapping_add(2_000);
        let tmst = l.tmst;
        let fcnt = l.devices[i].session.as_ref().map_or(0, |s| s.fcnt_up);
        let phy = l.devices[i].uplink(1, &[0x01, 0x02], false, 5, 0).unwrap();
        drop(l);
        let body = PushData {
            rxpk: vec![rxpk(&phy, 868.1, "SF7BW125", -70, 7.0, tmst)],
            stat: None,
        };
        if gw.push(&body, Duration::from_millis(300)).await.is_ok() {
            let at = Instant::now();
            load.lock().await.acked.push(Acked { device: i, fcnt, at });
        }
    }
}

/// Each device's frame counters as stored at home (the network server's uplinks).
async fn stored(home: &NodeProcess) -> Vec<Vec<u32>> {
    let mut all = Vec::new();
    for i in 0..DEVICES {
        let v = home
            .get_json(&format!("/v1/devices/{}/uplinks?limit=1000", eui(i)))
            .await
            .unwrap();
        let list = v["uplinks"].as_array().cloned().unwrap_or_default();
        all.push(list.iter().map(|u| u["fcnt"].as_u64().unwrap() as u32).collect());
    }
    all
}

async fn usage(node: &NodeProcess) -> BTreeMap<String, u64> {
    let v = node
        .get_json(&format!("/v1/usage?agreement={AGREEMENT}"))
        .await
        .unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap().to_string(),
                d["counters"]["uplinks"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_acknowledged_survive_a_kill_9_of_either_side() {
    let mut f = federation_with(false, false).await;
    let fleet: Vec<DevEui> = (0..DEVICES).map(eui).collect();
    let a = entente::agreement::transit(
        AGREEMENT,
        &"tours-metropole".parse().unwrap(),
        &"smo-vdln".parse().unwrap(),
        &fleet,
        86_400,
        chrono::Utc::now() - chrono::TimeDelta::days(1),
    );
    entente::agreement::establish(&f.nodes[1], &f.nodes[0], &a)
        .await
        .unwrap();
    let rows: Vec<String> = (0..DEVICES).map(|i| abp_row(eui(i), addr(i), "A")).collect();
    import(&f.nodes[1], &rows).await;
    let load = Arc::new(Mutex::new(Load {
        devices: (0..DEVICES)
            .map(|i| abp_device(eui(i), addr(i), DeviceClass::A))
            .collect(),
        next: 0,
        tmst: 1_000_000,
        acked: Vec::new(),
    }));
    let never = AtomicBool::new(false);

    // The home dies 1.5 s into the stream and comes back 2 s later; the gateway keeps
    // sending to the visited node all along.
    let gw_tours = Arc::new(gw(&f.nodes[0], 1).await);
    let stream = {
        let (load, gw) = (load.clone(), gw_tours.clone());
        tokio::spawn(async move { send(&load, &gw, Duration::from_secs(6), &AtomicBool::new(false)).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let smo = f.nodes.remove(1);
    smo.kill9().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let smo = NodeProcess::start(Path::new(EXE), f.dirs[1].path())
        .await
        .unwrap();
    stream.await.unwrap();
    let home_phase = load.lock().await.acked.len();

    // The visited node dies 2 s into a second stream, with frames in its dedup window,
    // in flight to the home and awaiting verdicts; it comes back and takes new ones.
    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (load, gw, stop) = (load.clone(), gw_tours.clone(), stop.clone());
        tokio::spawn(async move { send(&load, &gw, Duration::from_secs(10), &stop).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tours = f.nodes.remove(0);
    tours.kill9().await.unwrap();
    // Dead once kill9 returns (it waits for the exit): frames acknowledged until then
    // were acknowledged by the process that died.
    let killed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    let tours = NodeProcess::start(Path::new(EXE), f.dirs[0].path())
        .await
        .unwrap();
    // The gateway, already registered, reconnects to the new process's port.
    let gw_tours = GatewayEmulator::connect(tours.listening.gateway, gw_tours.eui)
        .await
        .unwrap();
    gw_tours.pull(WAIT).await.unwrap();
    let taken_back = m(&tours, "entente_lns_journal_taken_back_total").await;
    send(&load, &gw_tours, Duration::from_secs(2), &never).await;
    let acked = load.lock().await.acked.clone();

    // Everything settles: nothing waits at the visited node, both counters agree.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (home_usage, visited_usage) = loop {
        let (h, v) = (usage(&smo).await, usage(&tours).await);
        let waiting = m(&tours, "entente_roaming_buffered").await;
        if h == v && waiting == 0.0 && h.values().sum::<u64>() > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if usage(&smo).await == h && usage(&tours).await == v {
                break (h, v);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "home {} visited {} waiting {waiting}\n{}",
            h.values().sum::<u64>(),
            v.values().sum::<u64>(),
            tours.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at_home = stored(&smo).await;

    let mut twice = 0;
    let mut lost_home_phase = Vec::new();
    let mut lost_last_moments = Vec::new();
    let mut lost_otherwise = Vec::new();
    let sets: Vec<BTreeSet<u32>> = at_home
        .iter()
        .map(|l| {
            let s: BTreeSet<u32> = l.iter().copied().collect();
            twice += l.len() - s.len();
            s
        })
        .collect();
    for (n, a) in acked.iter().enumerate() {
        if sets[a.device].contains(&a.fcnt) {
            continue;
        }
        if n < home_phase {
            lost_home_phase.push(*a);
        } else if a.at <= killed_at && killed_at - a.at <= LAST_MOMENTS {
            lost_last_moments.push(*a);
        } else {
            lost_otherwise.push(*a);
        }
    }
    let delivered: usize = sets.iter().map(BTreeSet::len).sum();
    let counted: u64 = home_usage.values().sum();
    println!(
        "crash_e2e: {} frames acknowledged by the gateway path ({home_phase} around the home's kill -9), \
         {delivered} stored at home, {twice} twice; lost: {} around the home's kill, {} in the \
         visited node's last {} ms before its kill, {} otherwise; usage home {counted} = visited {}; \
         {taken_back} frames taken back from the visited node's journal at its restart",
        acked.len(),
        lost_home_phase.len(),
        lost_last_moments.len(),
        LAST_MOMENTS.as_millis(),
        lost_otherwise.len(),
        visited_usage.values().sum::<u64>(),
    );
    for (name, n) in [("home", &smo), ("visited", &tours)] {
        let text = n.metrics().await.unwrap();
        let roaming = |l: &&str| {
            l.starts_with("entente_roaming_received") || l.starts_with("entente_roaming_forwarded")
        };
        for l in text.lines().filter(roaming) {
            println!("{name}: {l}");
        }
    }
    assert_eq!(twice, 0, "a frame stored twice at home");
    assert!(
        lost_home_phase.is_empty(),
        "lost while the home died: {lost_home_phase:?}"
    );
    assert!(
        lost_last_moments.is_empty(),
        "acknowledged just before the visited node died, lost: {lost_last_moments:?}"
    );
    assert!(lost_otherwise.is_empty(), "lost: {lost_otherwise:?}");
    assert_eq!(home_usage, visited_usage);
    // What the home stored is what both sides billed, even for frames the home stored
    // just before its kill and counted only when they came again.
    assert_eq!(delivered as u64, counted, "stored at home, counted");
    smo.stop().await.unwrap();
    tours.stop().await.unwrap();
    for n in f.nodes {
        n.stop().await.unwrap();
    }
}
