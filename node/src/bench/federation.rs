//! `entente bench federation`: N nodes on one machine, each a real process with its own
//! RocksDB, all in one signed roster, every pair connected over libp2p. Prints the time
//! to form the full mesh, whether every node routes every member's DevAddrs to that
//! member, and each node's resident memory once idle.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::process::NodeProcess;

#[derive(Debug, clap::Args)]
pub struct FederationArgs {
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Idle time before memory is read.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn block(i: usize) -> String {
    format!("{:08X}/16", 0x2600_0000u32 + ((i as u32) << 16))
}

pub async fn federation(a: FederationArgs) -> Result<Value> {
    if !(2..=250).contains(&a.nodes) {
        bail!("--nodes must be 2 to 250");
    }
    let exe = std::env::current_exe().context("cannot find the entente binary")?;
    let tmp = tempfile::tempdir()?;
    let roster = tmp.path().join("roster.toml");
    let mut text = crate::roster::new("bench-federation", "majority");
    let mut dirs = Vec::new();
    let setup = Instant::now();
    for i in 0..a.nodes {
        let dir = tmp.path().join(format!("node-{i:03}"));
        text.push_str(&crate::roster::loopback_member(
            &dir,
            &format!("member-{i:03}").parse()?,
            &format!("Member {i}"),
            "commune",
            &block(i),
            vec![],
            &roster,
            |t| t,
        )?);
        dirs.push(dir);
    }
    std::fs::write(&roster, &text)?;
    for d in &dirs {
        crate::roster::sign(&d.join("node.toml"), &roster)?;
    }
    let setup_secs = setup.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(NodeProcess::start(&exe, d).await?);
    }
    let started_secs = start.elapsed().as_secs_f64();
    let want = a.nodes - 1;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut formed = false;
    while Instant::now() < deadline {
        let mut all = true;
        for n in &nodes {
            let v = n.get_json("/v1/peers").await?;
            let up = v["peers"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["connected"] == true).count());
            if up < want {
                all = false;
                break;
            }
        }
        if all {
            formed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let formed_secs = start.elapsed().as_secs_f64();

    // Every node routes every member's DevAddrs (first and last of the block) to it.
    let mut checked = 0u64;
    let mut wrong = Vec::new();
    for n in &nodes {
        for j in 0..a.nodes {
            for low in [0x0001u32, 0xfffe] {
                let addr = format!("{:08X}", 0x2600_0000u32 + ((j as u32) << 16) + low);
                let v = n.get_json(&format!("/v1/routes?dev_addr={addr}")).await?;
                checked += 1;
                if v["member"] != json!(format!("member-{j:03}")) {
                    wrong.push(json!({"node": n.listening.member, "dev_addr": addr, "got": v["member"]}));
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let mut rss: Vec<u64> = nodes.iter().map(|n| rss_kb(n.listening.pid) / 1024).collect();
    rss.sort_unstable();
    for n in nodes {
        n.stop().await?;
    }
    Ok(json!({
        "bench": "federation",
        "nodes": a.nodes,
        "connections": a.nodes * (a.nodes - 1) / 2,
        "setup_seconds": (setup_secs * 10.0).round() / 10.0,
        "processes_started_seconds": (started_secs * 10.0).round() / 10.0,
        "formed": formed,
        "full_mesh_formed_seconds": (formed_secs * 10.0).round() / 10.0,
        "routes_checked": checked,
        "routes_wrong": wrong.len(),
        "wrong_examples": wrong.into_iter().take(5).collect::<Vec<_>>(),
        "idle_rss_mb": {"median": rss[rss.len() / 2], "max": rss[rss.len() - 1], "min": rss[0]},
        "target": {"idle_rss_mb_max": 50},
    }))
}
