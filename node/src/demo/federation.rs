//! The federation of a scenario: one node process per member, its gateways, its
//! application server and the simulated devices, and what the run has counted so far.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use entente_model::{DevEui, GatewayEui, MemberId};
use entente_sim::{GatewayEmulator, SimDevice};
use serde_json::{Value, json};

use super::inbox::Inbox;
use super::{WAIT, step};
use crate::process::NodeProcess;
use crate::scenario::Scenario;

pub(super) struct Device {
    pub(super) group: usize,
    pub(super) eui: DevEui,
    pub(super) sim: SimDevice,
    pub(super) joined: bool,
}

pub struct Federation {
    pub sc: Scenario,
    pub base: PathBuf,
    pub roster: PathBuf,
    pub(super) nodes: Vec<Option<NodeProcess>>,
    pub(super) dirs: Vec<PathBuf>,
    pub(super) gws: Vec<Vec<GatewayEmulator>>,
    pub(super) inboxes: Vec<Inbox>,
    pub(super) devices: Vec<Device>,
    pub(super) tmst: u32,
    pub(super) exe: PathBuf,
    /// Per home member: frames sent that a live node could take.
    pub(super) expected: Vec<u64>,
    pub(super) lost_to_outage: u64,
    pub(super) downlinks_requested: u64,
    pub(super) joins: u64,
    pub(super) days_run: Vec<NaiveDate>,
}

/// The application group of a member's devices.
pub(super) fn group_label(m: &MemberId) -> String {
    m.as_str().to_uppercase()
}

/// A demo node's configuration: test clock, the scenario's policies, a short dedup window.
fn demo_node_config(t: String, policies: &Path) -> String {
    t.replace("[node]\n", "[node]\ntest_clock = true\n")
        .replace(
            "# policies = \"policies\"",
            &format!("policies = {:?}", policies.display().to_string()),
        )
        .replace("# dedup_window = \"200ms\"", "dedup_window = \"100ms\"")
        // The demo's inboxes listen on loopback.
        .replace("# push_urls = []", "push_urls = [\"http://127.0.0.1\"]")
}

/// Every member's node directory under `base` and the roster they all sign.
fn write_roster(sc: &Scenario, base: &Path, roster: &Path) -> Result<Vec<PathBuf>> {
    let policies =
        std::fs::canonicalize(sc.dir.join("../policies")).unwrap_or_else(|_| sc.dir.join("../policies"));
    let mut text = crate::roster::new(&sc.name, "all");
    let mut dirs = Vec::new();
    for m in &sc.members {
        let dir = base.join(m.id.as_str());
        text.push_str(&crate::roster::loopback_member(
            &dir,
            &m.id,
            &m.name,
            &m.kind,
            &m.dev_addr_block,
            vec![m.join_eui_range.clone()],
            roster,
            |t| demo_node_config(t, &policies),
        )?);
        dirs.push(dir);
    }
    std::fs::write(roster, &text)?;
    for d in &dirs {
        crate::roster::sign(&d.join("node.toml"), roster)?;
    }
    Ok(dirs)
}

/// Starts every member's node from its directory.
async fn start_nodes(sc: &Scenario, dirs: &[PathBuf], exe: &Path) -> Result<Vec<Option<NodeProcess>>> {
    let mut nodes = Vec::new();
    for (m, d) in sc.members.iter().zip(dirs) {
        let n = NodeProcess::start(exe, d).await?;
        step(&format!(
            "{}: node up (gateways udp/{}, API http://{}, peer {})",
            m.id,
            n.listening.gateway.port(),
            n.listening.api,
            n.listening.peer_id.clone().unwrap_or_default()
        ));
        nodes.push(Some(n));
    }
    Ok(nodes)
}

impl Federation {
    pub(super) fn node(&self, m: usize) -> Result<&NodeProcess> {
        self.nodes[m]
            .as_ref()
            .with_context(|| format!("{} is down", self.sc.members[m].id))
    }

    pub(super) fn live(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().flatten()
    }

    /// Creates every member's node, the roster they all sign, and starts them.
    pub async fn start(sc: Scenario, base: &Path, exe: &Path) -> Result<Federation> {
        std::fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
        let roster = base.join("roster.toml");
        let dirs = write_roster(&sc, base, &roster)?;
        step(&format!(
            "roster signed by all {} members: {}",
            sc.members.len(),
            roster.display()
        ));
        let nodes = start_nodes(&sc, &dirs, exe).await?;
        let n = sc.members.len();
        let f = Federation {
            expected: vec![0; n],
            sc,
            base: base.to_path_buf(),
            roster,
            nodes,
            dirs,
            gws: Vec::new(),
            inboxes: Vec::new(),
            devices: Vec::new(),
            tmst: 1_000_000,
            exe: exe.to_path_buf(),
            lost_to_outage: 0,
            downlinks_requested: 0,
            joins: 0,
            days_run: Vec::new(),
        };
        f.wait_connected().await?;
        step("federation formed: every node connected to every other over libp2p");
        Ok(f)
    }

    /// Waits until every live node sees every other member connected.
    pub(super) async fn wait_connected(&self) -> Result<()> {
        let want = self.sc.members.len() - 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for n in self.live() {
            loop {
                let v = n.get_json("/v1/peers").await?;
                let up = v["peers"]
                    .as_array()
                    .map_or(0, |p| p.iter().filter(|p| p["connected"] == true).count());
                if up >= want {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{} sees {up} of {want} peers", n.listening.member);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    fn gateway_eui(m: usize, g: usize) -> GatewayEui {
        GatewayEui([0, 0x80, 0, 0, 0xde, m as u8, 0, g as u8])
    }

    /// Connects member `m`'s simulated gateways to its node (registering them first when
    /// `register`, i.e. the first time; otherwise after a restart).
    pub(super) async fn connect_gateways(&mut self, m: usize, register: bool) -> Result<()> {
        let node = self.node(m)?;
        let mut v = Vec::new();
        for (g, spec) in self.sc.members[m].gateways.iter().enumerate() {
            let eui = Self::gateway_eui(m, g);
            if register {
                node.post_json(
                    "/v1/gateways",
                    &json!({"eui": eui.to_string(), "name": spec.name,
                            "position": {"latitude": spec.latitude, "longitude": spec.longitude}}),
                )
                .await?;
            }
            let gw = GatewayEmulator::connect(node.listening.gateway, eui).await?;
            gw.pull(WAIT).await?;
            v.push(gw);
        }
        if register {
            self.gws.push(v);
        } else {
            self.gws[m] = v;
        }
        Ok(())
    }

    /// Moves every live node's clock forward.
    pub(super) async fn advance(&self, secs: i64) -> Result<()> {
        for n in self.live() {
            n.post_json("/v1/clock", &json!({"advance_secs": secs})).await?;
        }
        Ok(())
    }

    pub(super) async fn now(&self) -> Result<DateTime<Utc>> {
        let v = self
            .live()
            .next()
            .context("no node up")?
            .get_json("/v1/clock")
            .await?;
        Ok(DateTime::parse_from_rfc3339(v["now"].as_str().unwrap_or_default())?.to_utc())
    }

    pub(super) async fn today(&self) -> Result<NaiveDate> {
        Ok(self.now().await?.date_naive())
    }

    pub fn delivered(&self) -> Vec<usize> {
        self.inboxes.iter().map(Inbox::count).collect()
    }

    /// Waits until every home node delivered what it could receive (or `max`).
    pub async fn settle(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while tokio::time::Instant::now() < deadline {
            let d = self.delivered();
            if d.iter().zip(&self.expected).all(|(d, e)| *d as u64 >= *e) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) -> Result<()> {
        for n in self.nodes.into_iter().flatten() {
            n.stop().await?;
        }
        Ok(())
    }

    pub fn summary(&self) -> Value {
        json!({
            "joins": self.joins,
            "downlinks_requested": self.downlinks_requested,
            "lost_to_outage": self.lost_to_outage,
            "days": self.days_run,
        })
    }
}
