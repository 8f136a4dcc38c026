//! `entente demo`: one node as a real process, a simulated gateway over real UDP, a
//! burst of traffic including bad datagrams, then a report of what the node counted.
//! (The federation of several nodes joins this demo as the federation lands.)

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use entente_gateway::json::{PushData, Stat};
use entente_model::GatewayEui;
use entente_sim::{GatewayEmulator, rxpk};
use serde_json::json;

use crate::process::{NodeProcess, metric};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to put the demo node (default: a new directory under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Uplink frames the simulated gateway sends.
    #[arg(long, default_value_t = 200)]
    pub frames: u32,
}

const WAIT: Duration = Duration::from_secs(5);

pub async fn run(args: DemoArgs) -> Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("entente-demo-{}", std::process::id())),
    };
    if dir.join("node.toml").exists() {
        bail!("{} already holds a node; pass another --dir", dir.display());
    }
    let member = "tours-metropole".parse()?;
    step(&format!(
        "initialising a node for Tours Métropole in {}",
        dir.display()
    ));
    crate::init::run(&crate::init::InitArgs {
        dir: &dir,
        member: &member,
        name: "Tours Métropole",
        gateway_port: 0,
        api_port: 0,
    })?;

    let exe = std::env::current_exe().context("cannot find the entente executable")?;
    step("starting `entente node` as a process");
    let node = NodeProcess::start(&exe, &dir).await?;
    step(&format!(
        "node listening: gateways on udp/{}, API on http://{}",
        node.listening.gateway, node.listening.api
    ));

    let result = traffic(&node, args.frames).await;
    step("stopping the node (SIGTERM)");
    let status = node.stop().await?;
    let report = result?;
    println!("\n{report}");
    println!("node exit: {status}");
    println!("data dir and log: {}", dir.display());
    Ok(())
}

fn step(s: &str) {
    println!("==> {s}");
}

async fn traffic(node: &NodeProcess, frames: u32) -> Result<String> {
    let eui: GatewayEui = "0080000000a1b2c3".parse()?;
    step(&format!(
        "registering gateway {eui} (Tours - Hôtel de Ville) through the API"
    ));
    node.post_json(
        "/v1/gateways",
        &json!({"eui": eui.to_string(), "name": "Tours - Hôtel de Ville",
                "position": {"latitude": 47.3900, "longitude": 0.6889, "altitude": 60.0}}),
    )
    .await?;

    let gw = GatewayEmulator::connect(node.listening.gateway, eui).await?;
    step("simulated gateway: PULL_DATA keep-alive");
    gw.pull(WAIT).await?;
    step(&format!(
        "simulated gateway: {frames} uplinks in PUSH_DATA datagrams, 1 status report"
    ));
    let stat = Stat {
        rxnb: frames,
        rxok: frames,
        rxfw: frames,
        ackr: 100.0,
        lati: Some(47.39),
        long: Some(0.6889),
        ..Stat::default()
    };
    for i in 0..frames {
        let mut phy = vec![0x40, 0x01, 0x00, 0x00, 0x26, 0x80];
        phy.extend_from_slice(&i.to_le_bytes());
        phy.extend_from_slice(&[0xaa; 8]);
        let datr = ["SF7BW125", "SF9BW125", "SF12BW125"][(i % 3) as usize];
        let body = PushData {
            rxpk: vec![rxpk(
                &phy,
                868.1 + 0.2 * f64::from(i % 3),
                datr,
                -70 - (i % 40) as i32,
                7.0,
                i * 1000,
            )],
            stat: (i == 0).then(|| stat.clone()),
        };
        gw.push(&body, WAIT).await?;
    }
    step("sending 3 malformed datagrams and 1 frame with a failed CRC");
    gw.send_raw(&[2, 0]).await?;
    gw.send_raw(&[9, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await?;
    gw.send_raw(b"\x02\x01\x02\x00\x00\x80\x00\x00\x00\xa1\xb2\xc3{not json")
        .await?;
    let mut bad = rxpk(&[0x40, 1, 2, 3], 868.1, "SF7BW125", -120, -15.0, 1);
    bad.stat = -1;
    gw.push(
        &PushData {
            rxpk: vec![bad],
            stat: None,
        },
        WAIT,
    )
    .await?;

    // The last three datagrams are not acked; give the node a moment to count them.
    let mut text = node.metrics().await?;
    for _ in 0..50 {
        if metric(&text, "entente_gateway_datagrams_received_total").unwrap_or(0.0) >= f64::from(frames + 5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = node.metrics().await?;
    }
    let gwv = node.get_json(&format!("/v1/gateways/{eui}")).await?;
    let m = |s: &str| metric(&text, s).unwrap_or(0.0);
    let mut r = String::new();
    r.push_str("Entente demo report\n===================\n");
    r.push_str(&format!(
        "node            {} ({})\n",
        node.listening.member, node.listening.api
    ));
    r.push_str(&format!(
        "gateway         {} \"{}\" online={} last_seen={}\n",
        gwv["eui"].as_str().unwrap_or("?"),
        gwv["name"].as_str().unwrap_or("?"),
        gwv["online"],
        gwv["last_seen"].as_str().unwrap_or("never"),
    ));
    r.push_str(&format!(
        "  counters      push_data={} pull_data={} frames={} dropped={}\n",
        gwv["push_data"], gwv["pull_data"], gwv["frames_received"], gwv["frames_dropped"]
    ));
    r.push_str(&format!(
        "datagrams       received={} \n",
        m("entente_gateway_datagrams_received_total")
    ));
    for reason in [
        "too_short",
        "bad_version",
        "bad_json",
        "unknown_type",
        "oversize",
        "unknown_gateway",
    ] {
        let v = m(&format!(
            "entente_gateway_datagrams_dropped_total{{reason=\"{reason}\"}}"
        ));
        if v > 0.0 {
            r.push_str(&format!("  dropped       {reason}={v}\n"));
        }
    }
    r.push_str(&format!(
        "frames          received={} accepted={} crc_failed={}\n",
        m("entente_gateway_frames_received_total"),
        m("entente_gateway_frames_accepted_total"),
        m("entente_gateway_frames_dropped_total{reason=\"crc_failed\"}"),
    ));
    r.push_str(&format!("gateways online {}\n", m("entente_gateways_online")));
    Ok(r)
}
