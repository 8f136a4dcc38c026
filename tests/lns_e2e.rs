//! End-to-end LNS: an `entente` node process, emulated gateways over real UDP, simulated
//! devices with real LoRaWAN crypto, the API over real HTTP, RocksDB in a temp dir.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_gateway::json::PushData;
use entente_lns::mac::DownCommand;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui};
use entente_sim::{DeviceSession, GatewayEmulator, ReceivedDownlink, SimDevice, rxpk};
use reqwest::Method;
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_entente");
const WAIT: Duration = Duration::from_secs(8);
const APP_KEY: &str = "2B7E151628AED2A6ABF7158809CF4F3C";
const NWK_KEY: &str = "000102030405060708090A0B0C0D0E0F";
const JOIN_EUI: &str = "70B3D5E75E000000";
const HEADER: &str = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;App EUI;App Key;NwkKey;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey";

struct Net {
    node: NodeProcess,
    gws: Vec<GatewayEmulator>,
    _dir: tempfile::TempDir,
}

async fn net(gateways: usize) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args([
            "init",
            "--member",
            "smo-vdln",
            "--name",
            "SMO Val de Loire Numérique",
        ])
        .args(["--gateway-port", "0", "--api-port", "0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Short dedup window keeps the tests quick; the default is 200 ms.
    let cfg = std::fs::read_to_string(dir.path().join("node.toml")).unwrap();
    let cfg = cfg.replace("# dedup_window_ms = 200", "dedup_window_ms = 100");
    std::fs::write(dir.path().join("node.toml"), cfg).unwrap();
    let node = NodeProcess::start(Path::new(EXE), dir.path()).await.unwrap();
    let mut gws = Vec::new();
    for i in 0..gateways {
        let eui = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xa0, i as u8 + 1]);
        node.post_json(
            "/v1/gateways",
            &json!({"eui": eui.to_string(), "name": format!("gw{i}")}),
        )
        .await
        .unwrap();
        let gw = GatewayEmulator::connect(node.listening.gateway, eui)
            .await
            .unwrap();
        gw.pull(WAIT).await.unwrap();
        gws.push(gw);
    }
    Net { node, gws, _dir: dir }
}

async fn import(node: &NodeProcess, rows: &[String]) {
    let csv = format!("{HEADER}\n{}\n", rows.join("\n"));
    let r = node
        .api(Method::POST, "/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status.as_u16(), 201, "{body}");
}

fn otaa_row(dev_eui: DevEui, version: MacVersion, class: &str) -> String {
    let nwk = if version.is_11() { NWK_KEY } else { "" };
    format!(
        "Compteur {dev_eui};SN-{dev_eui};MANUAL;47,59;1,33;SERVICE;AGGLOPOLYS/Eau;{dev_eui};{class};{JOIN_EUI};{APP_KEY};{nwk};{version};OTAA;;;"
    )
}

fn abp_row(dev_eui: DevEui, dev_addr: DevAddr, class: &str) -> String {
    format!(
        "Lampadaire {dev_eui};SN-{dev_eui};NONE;47.6;1.3;SERVICE;AGGLOPOLYS/Eclairage;{dev_eui};{class};;;;1.0.3;ABP;{dev_addr};{NWK_KEY};{APP_KEY}"
    )
}

fn abp_device(dev_eui: DevEui, dev_addr: DevAddr, class: DeviceClass) -> SimDevice {
    let k: AesKey = NWK_KEY.parse().unwrap();
    SimDevice::abp(
        MacVersion::V1_0_3,
        class,
        dev_eui,
        DeviceSession {
            dev_addr,
            f_nwk_s_int_key: k,
            s_nwk_s_int_key: k,
            nwk_s_enc_key: k,
            app_s_key: APP_KEY.parse().unwrap(),
            fcnt_up: 0,
            last_n_fcnt_down: None,
            last_a_fcnt_down: None,
            rx_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            opt_neg: false,
        },
    )
}

async fn push(gw: &GatewayEmulator, phy: &[u8], tmst: u32, snr: f32) {
    let body = PushData {
        rxpk: vec![rxpk(phy, 868.1, "SF7BW125", -60, snr, tmst)],
        stat: None,
    };
    gw.push(&body, WAIT).await.unwrap();
}

async fn uplinks(node: &NodeProcess, eui: DevEui, at_least: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = node
            .get_json(&format!("/v1/devices/{eui}/uplinks"))
            .await
            .unwrap();
        let list = v["uplinks"].as_array().cloned().unwrap_or_default();
        if list.len() >= at_least || tokio::time::Instant::now() > deadline {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric_when(node: &NodeProcess, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(&node.metrics().await.unwrap(), series).unwrap_or(0.0);
        if v >= at_least || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn downlink(gw: &GatewayEmulator) -> ReceivedDownlink {
    gw.next_downlink(WAIT).await.expect("a downlink")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaa_join_then_uplinks_for_every_version() {
    let n = net(1).await;
    let gw = &n.gws[0];
    let mut rows = Vec::new();
    let mut devices = Vec::new();
    for (i, v) in MacVersion::ALL.iter().enumerate() {
        let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 1, i as u8]);
        rows.push(otaa_row(eui, *v, "A"));
        devices.push(SimDevice::otaa(
            *v,
            DeviceClass::A,
            eui,
            JOIN_EUI.parse::<JoinEui>().unwrap(),
            APP_KEY.parse().unwrap(),
            NWK_KEY.parse().unwrap(),
        ));
    }
    import(&n.node, &rows).await;
    for (i, d) in devices.iter_mut().enumerate() {
        let tmst = 10_000_000 * (i as u32 + 1);
        push(gw, &d.join_request(), tmst, 7.0).await;
        let dl = downlink(gw).await;
        // Join accept in RX1: 5 s after the uplink, on its frequency.
        assert_eq!(dl.txpk.tmst, Some(tmst + 5_000_000), "{:?}", d.version);
        assert_eq!(dl.txpk.freq, 868.1);
        d.accept_join(&dl.phy_payload)
            .unwrap_or_else(|e| panic!("{:?}: {e}", d.version));

        let payload = [0xca, 0xfe, i as u8];
        push(
            gw,
            &d.uplink(10, &payload, false, 5, 0).unwrap(),
            tmst + 60_000_000,
            7.0,
        )
        .await;
        let ups = uplinks(&n.node, d.dev_eui, 1).await;
        assert_eq!(ups.len(), 1, "{:?}: uplink not stored", d.version);
        assert_eq!(ups[0]["payload_hex"], hex::encode(payload), "{:?}", d.version);
        assert_eq!(ups[0]["fport"], 10);
        assert_eq!(ups[0]["encrypted"], false);
        // The first uplink of a session is answered with a DevStatusReq (class A, RX1).
        let dl = downlink(gw).await;
        let got = d
            .receive(&dl.phy_payload)
            .unwrap_or_else(|e| panic!("{:?}: {e}", d.version));
        assert!(
            got.mac.contains(&DownCommand::DevStatusReq),
            "{:?}: {got:?}",
            d.version
        );
        // The answer travels in the next uplink and is kept.
        push(
            gw,
            &d.uplink(10, &[1], false, 5, 0).unwrap(),
            tmst + 120_000_000,
            7.0,
        )
        .await;
        uplinks(&n.node, d.dev_eui, 2).await;
        let dev = n
            .node
            .get_json(&format!("/v1/devices/{}", d.dev_eui))
            .await
            .unwrap();
        assert_eq!(dev["session"]["battery"], 200, "{dev}");
        assert!(
            dev.to_string().find(APP_KEY).is_none(),
            "keys must not leave the node"
        );
    }
    assert_eq!(
        metric_when(&n.node, "entente_lns_joins_accepted_total", 6.0).await,
        6.0
    );
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_nonce_replay_is_refused_and_rx2_is_used_when_rx1_fails() {
    let n = net(1).await;
    let gw = &n.gws[0];
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 2, 1]);
    import(&n.node, &[otaa_row(eui, MacVersion::V1_0_2, "A")]).await;
    let mut d = SimDevice::otaa(
        MacVersion::V1_0_2,
        DeviceClass::A,
        eui,
        JOIN_EUI.parse().unwrap(),
        APP_KEY.parse().unwrap(),
        AesKey::default(),
    );

    gw.fail_next_tx("TOO_LATE");
    push(gw, &d.join_request_with_nonce(0x1234), 1_000_000, 5.0).await;
    let first = downlink(gw).await;
    assert_eq!(first.answered_error.as_deref(), Some("TOO_LATE"));
    let rx2 = downlink(gw).await;
    assert_eq!(
        rx2.txpk.tmst,
        Some(7_000_000),
        "RX2 opens 6 s after a join request"
    );
    assert_eq!(rx2.txpk.freq, 869.525);
    assert_eq!(format!("{:?}", rx2.txpk.datr), "Lora(\"SF12BW125\")");
    d.accept_join(&rx2.phy_payload).unwrap();

    // The same DevNonce again is a replay: no join accept.
    tokio::time::sleep(Duration::from_millis(300)).await;
    push(gw, &d.join_request_with_nonce(0x1234), 9_000_000, 5.0).await;
    assert_eq!(
        metric_when(
            &n.node,
            "entente_lns_rejected_total{reason=\"dev_nonce_reused\"}",
            1.0
        )
        .await,
        1.0
    );
    assert!(gw.next_downlink(Duration::from_millis(500)).await.is_err());
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abp_counters_replay_wrong_mic_and_rollover() {
    let n = net(1).await;
    let gw = &n.gws[0];
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 3, 1]);
    let addr = DevAddr(0x2601_0001);
    import(&n.node, &[abp_row(eui, addr, "A")]).await;
    let mut d = abp_device(eui, addr, DeviceClass::A);

    d.set_fcnt_up(65_534).unwrap();
    let mut frames = Vec::new();
    for i in 0..3u32 {
        let f = d.uplink(2, &[i as u8], false, 5, 0).unwrap();
        push(gw, &f, 1_000_000 * (i + 1), 8.0).await;
        frames.push(f);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let ups = uplinks(&n.node, eui, 3).await;
    let fcnts: Vec<u64> = ups.iter().map(|u| u["fcnt"].as_u64().unwrap()).collect();
    assert_eq!(fcnts, vec![65_534, 65_535, 65_536], "FCnt crosses 65 535");

    // An old frame replayed, and a frame with a broken MIC: both refused, neither stored.
    push(gw, &frames[0], 9_000_000, 8.0).await;
    let mut bad = d.uplink(2, &[9], false, 5, 0).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    push(gw, &bad, 10_000_000, 8.0).await;
    assert_eq!(
        metric_when(&n.node, "entente_lns_rejected_total{reason=\"replay\"}", 1.0).await,
        1.0
    );
    assert_eq!(
        metric_when(&n.node, "entente_lns_rejected_total{reason=\"mic_failed\"}", 1.0).await,
        1.0
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(uplinks(&n.node, eui, 4).await.len(), 3);
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_frame_three_gateways_confirmed_ack_and_link_check() {
    let n = net(3).await;
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 4, 1]);
    let addr = DevAddr(0x2601_0002);
    import(&n.node, &[abp_row(eui, addr, "A")]).await;
    let mut d = abp_device(eui, addr, DeviceClass::A);

    // One confirmed uplink with a LinkCheckReq, heard by three gateways; the middle one best.
    d.queue_mac(&[0x02]);
    let f = d.uplink(5, b"hello", true, 5, 0).unwrap();
    let tmsts = [3_000_000u32, 4_000_000, 5_000_000];
    for (i, gw) in n.gws.iter().enumerate() {
        push(gw, &f, tmsts[i], [2.0, 9.5, -3.0][i]).await;
    }
    let ups = uplinks(&n.node, eui, 1).await;
    assert_eq!(ups.len(), 1, "processed once");
    assert_eq!(ups[0]["gateways"], 3, "with every gateway's metadata");
    assert_eq!(ups[0]["rx"].as_array().unwrap().len(), 3);

    // The ACK goes in RX1 (1 s) through the best gateway, at that gateway's tmst.
    let dl = downlink(&n.gws[1]).await;
    assert_eq!(dl.txpk.tmst, Some(4_000_000 + 1_000_000));
    assert_eq!(dl.txpk.freq, 868.1);
    let got = d.receive(&dl.phy_payload).unwrap();
    assert!(got.ack, "{got:?}");
    let check = got.mac.iter().find_map(|c| match c {
        DownCommand::LinkCheckAns { gw_count, margin } => Some((*gw_count, *margin)),
        _ => None,
    });
    assert_eq!(check.map(|c| c.0), Some(3), "{got:?}");
    assert!(n.gws[0].next_downlink(Duration::from_millis(300)).await.is_err());
    assert_eq!(
        metric_when(&n.node, "entente_lns_duplicate_copies_total", 2.0).await,
        2.0
    );
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_c_downlink_from_the_api_goes_out_at_once() {
    let n = net(1).await;
    let gw = &n.gws[0];
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 5, 1]);
    let addr = DevAddr(0x2601_0003);
    import(&n.node, &[abp_row(eui, addr, "C")]).await;
    let mut d = abp_device(eui, addr, DeviceClass::C);
    // A first uplink tells the network which gateway hears the street light.
    push(gw, &d.uplink(1, &[0], false, 5, 0).unwrap(), 1_000_000, 8.0).await;
    uplinks(&n.node, eui, 1).await;
    if let Ok(dl) = gw.next_downlink(Duration::from_millis(1500)).await {
        d.receive(&dl.phy_payload).unwrap(); // its MAC answer (DevStatusReq)
    }

    let item = n
        .node
        .post_json(
            &format!("/v1/devices/{eui}/queue"),
            &json!({"fport": 20, "data": "0164"}),
        )
        .await
        .unwrap();
    assert_eq!(item["fport"], 20);
    let dl = downlink(gw).await;
    assert!(dl.txpk.imme, "class C goes immediately");
    assert_eq!(dl.txpk.freq, 869.525);
    let got = d.receive(&dl.phy_payload).unwrap();
    assert_eq!((got.fport, got.payload.as_slice()), (Some(20), &[0x01, 0x64][..]));
    // Sent and unconfirmed: it leaves the queue.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let q = n
            .node
            .get_json(&format!("/v1/devices/{eui}/queue"))
            .await
            .unwrap();
        if q["count"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{q}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_import_changes_nothing_and_names_line_and_column() {
    let n = net(0).await;
    let good = otaa_row(DevEui([1, 0, 0, 0, 0, 0, 0, 1]), MacVersion::V1_0_3, "A");
    let bad = otaa_row(DevEui([1, 0, 0, 0, 0, 0, 0, 2]), MacVersion::V1_0_3, "Z");
    let csv = format!("{HEADER}\n{good}\n{bad}\n");
    let r = n
        .node
        .api(Method::POST, "/v1/devices/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("line 3") && msg.contains("Classe"), "{msg}");
    let list = n.node.get_json("/v1/devices").await.unwrap();
    assert_eq!(list["count"], 0, "all or nothing");
    n.node.stop().await.unwrap();
}
