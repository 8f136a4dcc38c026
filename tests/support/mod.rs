//! What the end-to-end tests share: a node process from `entente init`, emulated gateways
//! over real UDP, device rows for the CSV import, uplinks pushed through a gateway.
#![allow(dead_code)]

pub mod federation;
pub mod receiver;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_gateway::json::PushData;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, GatewayEui};
use entente_sim::{DeviceSession, GatewayEmulator, SimDevice, rxpk};
use reqwest::Method;
use serde_json::{Value, json};

pub const EXE: &str = env!("CARGO_BIN_EXE_entente");
pub const WAIT: Duration = Duration::from_secs(8);
pub const APP_KEY: &str = "2B7E151628AED2A6ABF7158809CF4F3C";
pub const NWK_KEY: &str = "000102030405060708090A0B0C0D0E0F";
pub const JOIN_EUI: &str = "70B3D5E75E000000";
pub const HEADER: &str = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;App EUI;App Key;NwkKey;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey";

pub struct Net {
    pub node: NodeProcess,
    pub gws: Vec<GatewayEmulator>,
    pub dir: tempfile::TempDir,
}

pub async fn net(gateways: usize) -> Net {
    net_with(gateways, |c| c).await
}

/// Lets recipients push to the tests' receivers on loopback and write under the temp dir.
pub fn allow_local_pushes(cfg: &str) -> String {
    cfg.replace("# push_urls = []", "push_urls = [\"http://127.0.0.1\"]")
        .replace(
            "# push_directories = []",
            &format!(
                "push_directories = [{:?}]",
                std::env::temp_dir().display().to_string()
            ),
        )
}

/// A node whose `node.toml` is first passed through `edit`.
pub async fn net_with(gateways: usize, edit: impl FnOnce(String) -> String) -> Net {
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
    let cfg = edit(allow_local_pushes(
        &cfg.replace("# dedup_window = \"200ms\"", "dedup_window = \"100ms\""),
    ));
    std::fs::write(dir.path().join("node.toml"), cfg).unwrap();
    let node = NodeProcess::start(Path::new(EXE), dir.path()).await.unwrap();
    let mut gws = Vec::new();
    for i in 0..gateways {
        let eui = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xa0, i as u8 + 1]);
        gws.push(gateway(&node, eui).await);
    }
    Net { node, gws, dir }
}

/// Registers a gateway on the node and connects an emulator for it (PULL_DATA sent).
pub async fn gateway(node: &NodeProcess, eui: GatewayEui) -> GatewayEmulator {
    node.post_json(
        "/v1/gateways",
        &json!({"eui": eui.to_string(), "name": format!("gw {eui}")}),
    )
    .await
    .unwrap();
    let gw = GatewayEmulator::connect(node.listening.gateway, eui)
        .await
        .unwrap();
    gw.pull(WAIT).await.unwrap();
    gw
}

pub async fn import(node: &NodeProcess, rows: &[String]) {
    import_csv(node, format!("{HEADER}\n{}\n", rows.join("\n"))).await;
}

/// Imports a whole CSV file through the API; it must be accepted.
pub async fn import_csv(node: &NodeProcess, csv: String) {
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

pub fn otaa_row(dev_eui: DevEui, version: MacVersion, class: &str) -> String {
    let nwk = if version.is_11() { NWK_KEY } else { "" };
    format!(
        "Compteur {dev_eui};SN-{dev_eui};MANUAL;47,59;1,33;SERVICE;AGGLOPOLYS/Eau;{dev_eui};{class};{JOIN_EUI};{APP_KEY};{nwk};{version};OTAA;;;"
    )
}

pub fn abp_row(dev_eui: DevEui, dev_addr: DevAddr, class: &str) -> String {
    format!(
        "Lampadaire {dev_eui};SN-{dev_eui};NONE;47.6;1.3;SERVICE;AGGLOPOLYS/Eclairage;{dev_eui};{class};;;;1.0.3;ABP;{dev_addr};{NWK_KEY};{APP_KEY}"
    )
}

pub fn abp_device(dev_eui: DevEui, dev_addr: DevAddr, class: DeviceClass) -> SimDevice {
    let k: AesKey = NWK_KEY.parse().unwrap();
    SimDevice::abp(
        MacVersion::V1_0_3,
        class,
        dev_eui,
        DeviceSession::abp_10(dev_addr, k, APP_KEY.parse().unwrap()),
    )
}

pub async fn push(gw: &GatewayEmulator, phy: &[u8], tmst: u32, snr: f32) {
    let body = PushData {
        rxpk: vec![rxpk(phy, 868.1, "SF7BW125", -60, snr, tmst)],
        stat: None,
    };
    gw.push(&body, WAIT).await.unwrap();
}

pub async fn uplinks(node: &NodeProcess, eui: DevEui, at_least: usize) -> Vec<Value> {
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

pub async fn metric_when(node: &NodeProcess, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(&node.metrics().await.unwrap(), series).unwrap_or(0.0);
        if v >= at_least || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
