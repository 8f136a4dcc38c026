//! Passive roaming end to end: three real `entente` nodes (Tours Métropole, SMO Val de
//! Loire Numérique, Agglopolys) on loopback, federated over libp2p under a roster they all
//! signed; emulated gateways over real UDP; a simulated SMO device heard only by the
//! neighbours' gateways; the SMO node's webhook as a real HTTP receiver.

mod support;

use std::path::Path;
use std::time::Duration;

use entente::process::NodeProcess;
use entente_lns::{DeviceClass, MacVersion};
use entente_model::{DevEui, JoinEui};
use entente_sim::SimDevice;
use support::federation::*;
use support::receiver::Receiver;
use support::*;

async fn federation() -> Federation {
    federation_with(true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smo_device_roams_on_tours_and_agglopolys() {
    let f = federation().await;
    let (tours, smo, agglo) = (&f.nodes[0], &f.nodes[1], &f.nodes[2]);
    let gw_tours = gw(tours, 1).await;
    let gw_agglo = gw(agglo, 2).await;
    let _gw_smo = gw(smo, 3).await;

    let rx = Receiver::start().await;
    webhook(smo, &rx).await;
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 1]);
    import(smo, &[otaa_row(eui, MacVersion::V1_0_3, "A")]).await;
    let mut d = SimDevice::otaa(
        MacVersion::V1_0_3,
        DeviceClass::A,
        eui,
        JOIN_EUI.parse::<JoinEui>().unwrap(),
        APP_KEY.parse().unwrap(),
        NWK_KEY.parse().unwrap(),
    );

    // OTAA through the Tours gateway only: the join accept comes back through it, in RX1.
    let t0 = 50_000_000u32;
    push(&gw_tours, &d.join_request(), t0, 8.0).await;
    let dl = gw_tours
        .next_downlink(WAIT)
        .await
        .expect("a join accept at the Tours gateway");
    assert_eq!(dl.txpk.tmst, Some(t0 + 5_000_000), "RX1 of the join accept");
    d.accept_join(&dl.phy_payload).unwrap();
    let addr = d.session.as_ref().unwrap().dev_addr;
    assert_eq!(addr.0 >> 16, 0x2602, "the SMO's DevAddr block: {addr}");

    // A confirmed uplink: the ACK goes out through the Tours gateway in RX1.
    let t1 = t0 + 30_000_000;
    push(
        &gw_tours,
        &d.uplink(2, &[0x11, 0x22], true, 5, 0).unwrap(),
        t1,
        8.0,
    )
    .await;
    let dl = gw_tours
        .next_downlink(WAIT)
        .await
        .expect("an ACK at the Tours gateway");
    assert_eq!(dl.txpk.tmst, Some(t1 + 1_000_000), "RX1 of the ACK");
    let got = d.receive(&dl.phy_payload).unwrap();
    assert!(got.ack, "{got:?}");

    // The SMO node delivered it to its webhook.
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.posts().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = &rx.posts()[0];
    assert_eq!(p["dev_eui"], eui.to_string());
    assert_eq!(p["payload_hex"], "1122");
    assert_eq!(p["gateways"][0]["eui"], gw_tours.eui.to_string(), "{p}");

    // One frame heard by a Tours and an Agglopolys gateway: one uplink at home, both
    // gateways' metadata merged.
    let t2 = t1 + 30_000_000;
    let frame = d.uplink(2, &[0x33], false, 5, 0).unwrap();
    push(&gw_tours, &frame, t2, 3.0).await;
    push(&gw_agglo, &frame, t2 + 777, 9.0).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.posts().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second uplink not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = rx.posts();
    assert_eq!(posts.len(), 2, "delivered once");
    let p = &posts[1];
    assert_eq!(p["gateway_count"], 2, "{p}");
    let gws: Vec<&str> = p["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["eui"].as_str().unwrap())
        .collect();
    assert!(gws.contains(&gw_tours.eui.to_string().as_str()), "{gws:?}");
    assert!(gws.contains(&gw_agglo.eui.to_string().as_str()), "{gws:?}");
    let stored = uplinks(smo, eui, 2).await;
    assert_eq!(stored.len(), 2);

    // Both visited nodes forwarded, the home node accepted, nobody refused anything.
    assert!(
        m(
            tours,
            "entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"accepted\"}"
        )
        .await
            >= 2.0
    );
    assert!(
        m(
            agglo,
            "entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"accepted\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        m(
            smo,
            "entente_roaming_received_total{peer=\"tours-metropole\",result=\"accepted\"}"
        )
        .await
            >= 3.0
    );
    assert!(
        m(
            tours,
            "entente_roaming_downlinks_total{peer=\"smo-vdln\",result=\"ok\"}"
        )
        .await
            >= 2.0
    );

    for n in f.nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_off_the_roster_is_refused_at_connection_time() {
    let f = federation().await;
    let tours = &f.nodes[0];
    // A rogue node whose own roster names Tours (with Tours' real key and address) and an
    // accomplice, so it is valid for the rogue and it dials Tours.
    let rogue = tempfile::tempdir().unwrap();
    let accomplice = tempfile::tempdir().unwrap();
    let roster = rogue.path().join("rogue-roster.toml");
    init(
        rogue.path(),
        "rogue",
        "Rogue",
        "26040000/16",
        free_tcp_port(),
        &roster,
    );
    init(
        accomplice.path(),
        "accomplice",
        "Accomplice",
        "26050000/16",
        free_tcp_port(),
        &roster,
    );
    let official = std::fs::read_to_string(&f.roster).unwrap();
    let tours_entry: String = official
        .split("\n[[member]]")
        .find(|b| b.contains("id = \"tours-metropole\""))
        .unwrap()
        .to_string();
    let mut text = entente(&["roster", "new", "--federation", "rogue"]);
    text.push_str(&format!("\n[[member]]{tours_entry}"));
    for d in [&rogue, &accomplice] {
        let cfg = d.path().join("node.toml");
        text.push_str(&entente(&["roster", "member", "--config", cfg.to_str().unwrap()]));
    }
    std::fs::write(&roster, &text).unwrap();
    for d in [&rogue, &accomplice] {
        let cfg = d.path().join("node.toml");
        entente(&[
            "roster",
            "sign",
            "--config",
            cfg.to_str().unwrap(),
            roster.to_str().unwrap(),
        ]);
    }
    let node = NodeProcess::start(Path::new(EXE), rogue.path()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while m(tours, "entente_peering_connections_refused_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", tours.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its side of the connection may live for a moment until Tours's refusal closes it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = node.get_json("/v1/peers").await.unwrap();
        let none = v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["connected"] == false);
        if none {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await.unwrap();
    for n in f.nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplinks_wait_at_the_visited_node_while_home_is_down() {
    let mut f = federation().await;
    let gw_tours = gw(&f.nodes[0], 1).await;
    let rx = Receiver::start().await;
    let smo = &f.nodes[1];
    webhook(smo, &rx).await;
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 2]);
    let addr = entente_model::DevAddr(0x2602_0042);
    import(smo, &[abp_row(eui, addr, "A")]).await;
    // Tours's routing table sends this DevAddr to the SMO; a bad one is a clear 400.
    let r = f.nodes[0]
        .get_json(&format!("/v1/routes?dev_addr={addr}"))
        .await
        .unwrap();
    assert_eq!(r["member"], "smo-vdln", "{r}");
    let bad = f.nodes[0]
        .api(reqwest::Method::GET, "/v1/routes?dev_addr=zz")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let mut d = abp_device(eui, addr, DeviceClass::A);
    let mut tmst = 1_000_000u32;
    let mut send = async |d: &mut SimDevice| {
        tmst += 20_000_000;
        push(&gw_tours, &d.uplink(2, &[0x40], false, 5, 0).unwrap(), tmst, 8.0).await;
    };
    send(&mut d).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.posts().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first uplink not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first message's delivery is acknowledged in the home's store before the kill:
    // one in flight at a kill -9 may come again (at least once), which is not this test.
    let deadline = tokio::time::Instant::now() + WAIT;
    let depth = async || {
        let v = smo.get_json("/v1/recipients").await.unwrap();
        v["recipients"].as_array().map_or(0, |r| {
            r.iter()
                .map(|x| x["queue_depth"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
    };
    while depth().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "queue not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The home node dies; the device keeps talking to the Tours gateway.
    let smo = f.nodes.remove(1);
    smo.kill9().await.unwrap();
    for _ in 0..5 {
        send(&mut d).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tours = &f.nodes[0];
    let deadline = tokio::time::Instant::now() + WAIT;
    while m(tours, "entente_roaming_buffered").await < 5.0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", tours.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Home comes back: the buffered uplinks arrive, late, each once, in order.
    let smo = NodeProcess::start(Path::new(EXE), f.dirs[1].path())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rx.posts().len() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} delivered\n{}",
            rx.posts().len(),
            tours.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fcnts: Vec<u64> = rx.posts().iter().map(|p| p["fcnt"].as_u64().unwrap()).collect();
    assert_eq!(fcnts, vec![0, 1, 2, 3, 4, 5], "none lost, none twice");
    // The usage counters survived the kill -9 and match on both sides, frame for frame.
    let usage = |v: serde_json::Value| -> Vec<(String, u64)> {
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
    };
    let path = "/v1/usage?agreement=tours-metropole-smo";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (t, s) = (
            usage(tours.get_json(path).await.unwrap()),
            usage(smo.get_json(path).await.unwrap()),
        );
        if t == s && t == vec![(format!("addr:{addr}"), 6)] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "tours {t:?} smo {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m(tours, "entente_roaming_buffered").await, 0.0);
    assert!(
        m(
            tours,
            "entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"late_accepted\"}"
        )
        .await
            >= 5.0
    );
    smo.stop().await.unwrap();
    for n in f.nodes {
        n.stop().await.unwrap();
    }
}

/// Every step on both nodes (dedup, routing, policy, usage, forwarding, the network
/// server) reads the frame parsed where it entered: one parse at the visited gateway, one
/// as the home node decodes the peer's request, whatever the frame goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roamed_uplink_is_parsed_once_on_each_node() {
    let f = federation().await;
    let (tours, smo, agglo) = (&f.nodes[0], &f.nodes[1], &f.nodes[2]);
    let gw_tours = gw(tours, 1).await;
    let _gw_smo = gw(smo, 3).await;
    let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 2]);
    import(smo, &[otaa_row(eui, MacVersion::V1_0_3, "A")]).await;
    let mut d = SimDevice::otaa(
        MacVersion::V1_0_3,
        DeviceClass::A,
        eui,
        JOIN_EUI.parse::<JoinEui>().unwrap(),
        APP_KEY.parse().unwrap(),
        NWK_KEY.parse().unwrap(),
    );
    let t0 = 50_000_000u32;
    push(&gw_tours, &d.join_request(), t0, 8.0).await;
    let dl = gw_tours.next_downlink(WAIT).await.expect("a join accept");
    d.accept_join(&dl.phy_payload).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let parses = "entente_uplink_parses_total";
    let before = [
        m(tours, parses).await,
        m(smo, parses).await,
        m(agglo, parses).await,
    ];
    assert!(
        before[0] >= 1.0 && before[1] >= 1.0,
        "the join was parsed: {before:?}"
    );
    push(
        &gw_tours,
        &d.uplink(2, &[0x42], false, 5, 0).unwrap(),
        t0 + 30_000_000,
        8.0,
    )
    .await;
    uplinks(smo, eui, 1).await;
    // Let anything that could still read the frame (usage on both sides, delivery) run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = [
        m(tours, parses).await,
        m(smo, parses).await,
        m(agglo, parses).await,
    ];
    assert_eq!(after[0] - before[0], 1.0, "visited node: {before:?} -> {after:?}");
    assert_eq!(after[1] - before[1], 1.0, "home node: {before:?} -> {after:?}");
    assert_eq!(after[2] - before[2], 0.0, "a member that never heard it");
    for n in f.nodes {
        n.stop().await.unwrap();
    }
}
