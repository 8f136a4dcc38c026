//! End-to-end LNS: an `entente` node process, emulated gateways over real UDP, simulated
//! devices with real LoRaWAN crypto, the API over real HTTP, RocksDB in a temp dir.

mod support;

use std::time::Duration;

use entente::process::metric;
use entente_lns::mac::DownCommand;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, JoinEui};
use entente_sim::{GatewayEmulator, ReceivedDownlink, SimDevice};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

async fn downlink(gw: &GatewayEmulator) -> ReceivedDownlink {
    gw.next_downlink(WAIT).await.expect("a downlink")
}

/// An ABP Class C street light imported and heard once through the net's gateway (a first
/// uplink tells the network which gateway hears it), its MAC answer taken in.
async fn class_c_heard_by(n: &Net, eui: DevEui, addr: DevAddr) -> SimDevice {
    let gw = &n.gws[0];
    import(&n.node, &[abp_row(eui, addr, "C")]).await;
    let mut d = abp_device(eui, addr, DeviceClass::C);
    push(gw, &d.uplink(1, &[0], false, 5, 0).unwrap(), 1_000_000, 8.0).await;
    uplinks(&n.node, eui, 1).await;
    if let Ok(dl) = gw.next_downlink(Duration::from_millis(1500)).await {
        d.receive(&dl.phy_payload).unwrap(); // its MAC answer (DevStatusReq)
    }
    d
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
    let mut d = class_c_heard_by(&n, eui, addr).await;

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

/// A host that is not the gateway claims its EUI: from 127.0.0.2 it pushes a device's
/// frames, sends PULL_DATA (v2 and v1) to take the downlink path, and forges TX_ACKs. The
/// gateway was pinned to 127.0.0.1 by its first datagram: every one of those datagrams is
/// dropped and counted, none is answered, no frame is stored, and the next downlink still
/// goes to the real gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_for_a_pinned_gateway_from_elsewhere_are_dropped() {
    let n = net(1).await;
    let gw = &n.gws[0];
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 6, 1]);
    let addr = DevAddr(0x2601_0006);
    let mut d = class_c_heard_by(&n, eui, addr).await;
    let gw_path = format!("/v1/gateways/{}", gw.eui);
    let pinned = n.node.get_json(&gw_path).await.unwrap()["source"].clone();
    assert_eq!(pinned["source"], "127.0.0.1", "{pinned}");

    let elsewhere: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let server = n.node.listening.gateway;
    let spoofer = GatewayEmulator::connect_from(server, gw.eui, 2, elsewhere)
        .await
        .unwrap();
    let spoofer_v1 = GatewayEmulator::connect_from(server, gw.eui, 1, elsewhere)
        .await
        .unwrap();
    let (pushes, pulls, tx_acks) = (200u32, 50u32, 100u32);
    // The device's next frames, as a recorder near it would have them.
    let mut recorded = abp_device(eui, addr, DeviceClass::C);
    recorded.uplink(1, &[0], false, 5, 0).unwrap();
    for i in 0..pushes {
        let phy = recorded.uplink(1, &[i as u8], false, 5, 0).unwrap();
        let body = entente_gateway::json::PushData {
            rxpk: vec![entente_sim::rxpk(
                &phy,
                868.1,
                "SF7BW125",
                -40,
                10.0,
                5_000_000 + i,
            )],
            stat: None,
        };
        spoofer.push_no_wait(&body).await.unwrap();
    }
    for i in 0..pulls {
        let s = if i % 2 == 0 { &spoofer } else { &spoofer_v1 };
        assert!(
            s.pull(Duration::from_millis(20)).await.is_err(),
            "PULL_ACK to the spoofer"
        );
    }
    for i in 0..tx_acks {
        let mut ack = vec![2, (i >> 8) as u8, i as u8, 0x05];
        ack.extend_from_slice(&gw.eui.0);
        ack.extend_from_slice(br#"{"txpk_ack":{"error":"NONE"}}"#);
        spoofer.send_raw(&ack).await.unwrap();
    }
    let sent = f64::from(pushes + pulls + tx_acks);
    let series = "entente_gateway_datagrams_dropped_total{reason=\"source_mismatch\"}";
    let dropped = metric_when(&n.node, series, sent).await;
    assert_eq!(
        dropped, sent,
        "every datagram from elsewhere dropped, counted once"
    );
    assert_eq!(uplinks(&n.node, eui, 2).await.len(), 1, "no spoofed frame stored");
    let accepted = metric(
        &n.node.metrics().await.unwrap(),
        "entente_lns_uplinks_accepted_total",
    );
    assert_eq!(accepted, Some(1.0));

    // The downlink path is the real gateway's: a Class C downlink goes to it alone.
    n.node
        .post_json(
            &format!("/v1/devices/{eui}/queue"),
            &json!({"fport": 20, "data": "0164"}),
        )
        .await
        .unwrap();
    let dl = downlink(gw).await;
    let got = d.receive(&dl.phy_payload).unwrap();
    assert_eq!(got.payload, vec![0x01, 0x64]);
    for s in [&spoofer, &spoofer_v1] {
        assert!(
            s.next_downlink(Duration::from_millis(300)).await.is_err(),
            "a downlink reached the spoofer"
        );
    }
    let after = n.node.get_json(&gw_path).await.unwrap()["source"].clone();
    assert_eq!(after, pinned, "the pin is unchanged");
    println!(
        "spoofing: {sent} datagrams from {elsewhere} for gateway {} ({pushes} PUSH_DATA with the device's \
         frames, {pulls} PULL_DATA v2 and v1, {tx_acks} TX_ACK): {dropped} dropped as source_mismatch, \
         0 answered, 0 frames stored; the Class C downlink went to the gateway at 127.0.0.1",
        gw.eui
    );
    n.node.stop().await.unwrap();
}
