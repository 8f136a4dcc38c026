//! Passive roaming end to end: three real `entente` nodes (Tours Métropole, SMO Val de
//! Loire Numérique, Agglopolys) on loopback, federated over libp2p under a roster they all
//! signed; emulated gateways over real UDP; a simulated SMO device heard only by the
//! neighbours' gateways; the SMO node's webhook as a real HTTP receiver.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_lns::{DeviceClass, MacVersion};
use entente_model::{DevEui, GatewayEui, JoinEui};
use entente_sim::{GatewayEmulator, SimDevice};
use serde_json::json;
use support::receiver::Receiver;
use support::*;

struct Site {
    member: &'static str,
    name: &'static str,
    kind: &'static str,
    block: &'static str,
    join_range: &'static str,
    roams_on: &'static [&'static str],
}

const SITES: [Site; 3] = [
    Site {
        member: "tours-metropole",
        name: "Tours Métropole",
        kind: "metropole",
        block: "26010000/16",
        join_range: "70B3D5E75E010000-70B3D5E75E01FFFF",
        roams_on: &[],
    },
    Site {
        member: "smo-vdln",
        name: "SMO Val de Loire Numérique",
        kind: "syndicate",
        block: "26020000/16",
        join_range: "70B3D5E75E000000-70B3D5E75E00FFFF",
        roams_on: &["tours-metropole", "agglopolys"],
    },
    Site {
        member: "agglopolys",
        name: "Agglopolys",
        kind: "syndicate",
        block: "26030000/16",
        join_range: "70B3D5E75E020000-70B3D5E75E02FFFF",
        roams_on: &[],
    },
];

fn entente(args: &[&str]) -> String {
    let out = Command::new(EXE).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "entente {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Federation {
    nodes: Vec<NodeProcess>,
    dirs: Vec<tempfile::TempDir>,
    roster: PathBuf,
    _shared: tempfile::TempDir,
}

fn init(dir: &Path, member: &str, name: &str, block: &str, p2p_port: u16, roster: &Path) {
    entente(&[
        "init",
        "--member",
        member,
        "--name",
        name,
        "--gateway-port",
        "0",
        "--api-port",
        "0",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let cfg_path = dir.join("node.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = entente::init::federate(&text, block, roster, &format!("/ip4/127.0.0.1/tcp/{p2p_port}"))
        .replace("# dedup_window_ms = 200", "dedup_window_ms = 150");
    std::fs::write(&cfg_path, cfg).unwrap();
}

/// Three nodes under one roster that each of them signed.
async fn federation() -> Federation {
    let shared = tempfile::tempdir().unwrap();
    let roster = shared.path().join("roster.toml");
    let mut text = entente(&["roster", "new", "--federation", "val-de-loire"]);
    let mut dirs = Vec::new();
    for s in &SITES {
        let dir = tempfile::tempdir().unwrap();
        let port = free_tcp_port();
        init(dir.path(), s.member, s.name, s.block, port, &roster);
        let cfg = dir.path().join("node.toml");
        let address = format!("/ip4/127.0.0.1/tcp/{port}");
        let mut args = vec![
            "roster",
            "member",
            "--config",
            cfg.to_str().unwrap(),
            "--kind",
            s.kind,
            "--address",
            &address,
            "--dev-addr-block",
            s.block,
            "--join-eui-range",
            s.join_range,
        ];
        for r in s.roams_on {
            args.extend(["--roams-on", r]);
        }
        text.push_str(&entente(&args));
        dirs.push(dir);
    }
    std::fs::write(&roster, &text).unwrap();
    for d in &dirs {
        let cfg = d.path().join("node.toml");
        entente(&[
            "roster",
            "sign",
            "--config",
            cfg.to_str().unwrap(),
            roster.to_str().unwrap(),
        ]);
    }
    let shown = entente(&["roster", "show", roster.to_str().unwrap()]);
    assert!(shown.contains("valid: signed by"), "{shown}");

    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(NodeProcess::start(Path::new(EXE), d.path()).await.unwrap());
    }
    // Every node sees the two others.
    for n in &nodes {
        wait_peers(n, 2).await;
    }
    // The SMO's roaming devices are declared under conventions with Tours and Agglopolys.
    let devices = [
        DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 1]),
        DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 2]),
    ];
    let start = chrono::Utc::now() - chrono::TimeDelta::days(1);
    for (i, host) in [(0, "tours-metropole"), (2, "agglopolys")] {
        let a = entente::agreement::transit(
            &format!("{host}-smo"),
            &host.parse().unwrap(),
            &"smo-vdln".parse().unwrap(),
            &devices,
            24,
            start,
        );
        entente::agreement::establish(&nodes[1], &nodes[i], &a).await.unwrap();
    }
    Federation {
        nodes,
        dirs,
        roster,
        _shared: shared,
    }
}

async fn wait_peers(n: &NodeProcess, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = n.get_json("/v1/peers").await.unwrap();
        let up = v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["connected"] == true)
            .count();
        if up >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sees {up} peers: {v}\n{}",
            n.listening.member,
            n.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn gw(node: &NodeProcess, last: u8) -> GatewayEmulator {
    gateway(node, GatewayEui([0, 0x80, 0, 0, 0, 0, 0xb0, last])).await
}

/// The SMO's application server: a webhook for its device group.
async fn webhook(smo: &NodeProcess, rx: &Receiver) {
    smo.post_json(
        "/v1/recipients",
        &json!({"name": "webhook", "group": "AGGLOPOLYS", "kind": {"type": "http_push", "url": rx.url("/hook")}}),
    )
    .await
    .unwrap();
}

async fn m(node: &NodeProcess, series: &str) -> f64 {
    metric(&node.metrics().await.unwrap(), series).unwrap_or(0.0)
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
    let v = node.get_json("/v1/peers").await.unwrap();
    assert!(
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["connected"] == false),
        "{v}"
    );
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
