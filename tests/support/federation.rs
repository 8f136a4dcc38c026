//! A federation of three real nodes (Tours Métropole, SMO Val de Loire Numérique,
//! Agglopolys) under a roster each of them signed, for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_model::{DevEui, GatewayEui};
use entente_sim::GatewayEmulator;
use serde_json::json;

use super::receiver::Receiver;
use super::{EXE, gateway};

pub struct Site {
    member: &'static str,
    name: &'static str,
    kind: &'static str,
    block: &'static str,
    join_range: &'static str,
    roams_on: &'static [&'static str],
}

pub const SITES: [Site; 3] = [
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

pub fn entente(args: &[&str]) -> String {
    let out = Command::new(EXE).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "entente {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A port for a node to listen on later (the roster names it before the node starts).
/// Taken below the kernel's ephemeral range (32768 and up), where no outgoing
/// connection's source port can land on it before the node binds it; tried until one
/// binds.
pub fn free_tcp_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Federation {
    pub nodes: Vec<NodeProcess>,
    pub dirs: Vec<tempfile::TempDir>,
    pub roster: PathBuf,
    pub _shared: tempfile::TempDir,
}

pub fn init(dir: &Path, member: &str, name: &str, block: &str, p2p_port: u16, roster: &Path) {
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
        .replace("# dedup_window = \"200ms\"", "dedup_window = \"150ms\"");
    std::fs::write(&cfg_path, super::allow_local_pushes(&cfg)).unwrap();
}

/// Three nodes under one roster that each of them signed; with `agreements`, the SMO's
/// roaming devices are declared under conventions with Tours and Agglopolys.
pub async fn federation_with(agreements: bool, test_clock: bool) -> Federation {
    let shared = tempfile::tempdir().unwrap();
    let roster = shared.path().join("roster.toml");
    let mut text = entente(&["roster", "new", "--federation", "val-de-loire"]);
    let mut dirs = Vec::new();
    for s in &SITES {
        let dir = tempfile::tempdir().unwrap();
        let port = free_tcp_port();
        init(dir.path(), s.member, s.name, s.block, port, &roster);
        // The billing policies shipped with the repository.
        let cfg = dir.path().join("node.toml");
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let node_toml = std::fs::read_to_string(&cfg).unwrap().replace(
            "# policies = \"policies\"",
            &format!("policies = {:?}", policies.display().to_string()),
        );
        std::fs::write(&cfg, node_toml).unwrap();
        if test_clock {
            let cfg = dir.path().join("node.toml");
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(&cfg, text.replace("[node]\n", "[node]\ntest_clock = true\n")).unwrap();
        }
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
    if agreements {
        establish_transit(&nodes).await;
    }
    Federation {
        nodes,
        dirs,
        roster,
        _shared: shared,
    }
}

/// Conventions hosted by Tours and Agglopolys for the SMO's two roaming test devices.
pub async fn establish_transit(nodes: &[NodeProcess]) {
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
        entente::agreement::establish(&nodes[1], &nodes[i], &a)
            .await
            .unwrap();
    }
}

pub async fn wait_peers(n: &NodeProcess, want: usize) {
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

pub async fn gw(node: &NodeProcess, last: u8) -> GatewayEmulator {
    gateway(node, GatewayEui([0, 0x80, 0, 0, 0, 0, 0xb0, last])).await
}

/// The SMO's application server: a webhook for its device group.
pub async fn webhook(smo: &NodeProcess, rx: &Receiver) {
    smo.post_json(
        "/v1/recipients",
        &json!({"name": "webhook", "group": "AGGLOPOLYS", "kind": {"type": "http_push", "url": rx.url("/hook")}}),
    )
    .await
    .unwrap();
}

pub async fn m(node: &NodeProcess, series: &str) -> f64 {
    metric(&node.metrics().await.unwrap(), series).unwrap_or(0.0)
}
