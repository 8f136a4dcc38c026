//! `entente demo [SCENARIO]`: a scenario's federation as real `entente` processes on
//! loopback, each with its own data dir, gateways and devices from `sim` over real UDP,
//! libp2p between nodes. It runs the agreements (proposal, approval), days of traffic
//! with roaming, joins and downlinks, a node outage and its recovery, the usage
//! statements and a billing period, then prints a report (and `--json` writes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use entente_gateway::json::PushData;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevEui, GatewayEui, MemberId};
use entente_sim::{DeviceSession, GatewayEmulator, SimDevice, rxpk};
use serde_json::{Value, json};

use crate::process::{NodeProcess, metric};
use crate::scenario::Scenario;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A scenario of `scenarios/` (or a path to one).
    #[arg(default_value = "val-de-loire")]
    pub scenario: String,
    /// Where the nodes' directories go (default: a new directory under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run this many days instead of the scenario's.
    #[arg(long)]
    pub days: Option<u32>,
}

const WAIT: Duration = Duration::from_secs(10);

fn step(s: &str) {
    eprintln!("==> {s}");
}

/// An application server for each member: counts what its node delivers.
struct Inbox {
    url: String,
    posts: Arc<Mutex<Vec<Value>>>,
    _stop: tokio_util::sync::DropGuard,
}

async fn inbox() -> Result<Inbox> {
    let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let p = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let p = p.clone();
            async move {
                p.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", l.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    });
    Ok(Inbox {
        url,
        posts,
        _stop: stop.drop_guard(),
    })
}

impl Inbox {
    fn count(&self) -> usize {
        self.posts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

struct Device {
    group: usize,
    eui: DevEui,
    sim: SimDevice,
    joined: bool,
}

pub struct Federation {
    pub sc: Scenario,
    pub base: PathBuf,
    pub roster: PathBuf,
    nodes: Vec<Option<NodeProcess>>,
    dirs: Vec<PathBuf>,
    gws: Vec<Vec<GatewayEmulator>>,
    inboxes: Vec<Inbox>,
    devices: Vec<Device>,
    tmst: u32,
    exe: PathBuf,
    /// Per home member: frames sent that a live node could take.
    expected: Vec<u64>,
    lost_to_outage: u64,
    downlinks_requested: u64,
    joins: u64,
    days_run: Vec<NaiveDate>,
}

fn group_label(m: &MemberId) -> String {
    m.as_str().to_uppercase()
}

fn key_for(parts: &[&str]) -> Result<AesKey> {
    let hex: String = parts.concat().chars().take(32).collect();
    hex.parse().map_err(|e| anyhow::anyhow!("device key: {e}"))
}

impl Federation {
    fn node(&self, m: usize) -> Result<&NodeProcess> {
        self.nodes[m]
            .as_ref()
            .with_context(|| format!("{} is down", self.sc.members[m].id))
    }

    fn live(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().flatten()
    }

    /// Creates every member's node, the roster they all sign, and starts them.
    pub async fn start(sc: Scenario, base: &Path, exe: &Path) -> Result<Federation> {
        std::fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
        let roster = base.join("roster.toml");
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
                &roster,
                |t| {
                    t.replace("[node]\n", "[node]\ntest_clock = true\n")
                        .replace(
                            "# policies = \"policies\"",
                            &format!("policies = {:?}", policies.display().to_string()),
                        )
                        .replace("# dedup_window_ms = 200", "dedup_window_ms = 100")
                },
            )?);
            dirs.push(dir);
        }
        std::fs::write(&roster, &text)?;
        for d in &dirs {
            crate::roster::sign(&d.join("node.toml"), &roster)?;
        }
        step(&format!(
            "roster signed by all {} members: {}",
            sc.members.len(),
            roster.display()
        ));
        let mut nodes = Vec::new();
        for (m, d) in sc.members.iter().zip(&dirs) {
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

    async fn wait_connected(&self) -> Result<()> {
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

    async fn connect_gateways(&mut self, m: usize, register: bool) -> Result<()> {
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

    /// Gateways, application servers, and every device imported on its home node.
    pub async fn provision(&mut self) -> Result<()> {
        for m in 0..self.sc.members.len() {
            self.connect_gateways(m, true).await?;
            let inbox = inbox().await?;
            self.node(m)?
                .post_json(
                    "/v1/recipients",
                    &json!({"name": "application", "group": group_label(&self.sc.members[m].id),
                            "kind": {"type": "http_push", "url": inbox.url}}),
                )
                .await?;
            self.inboxes.push(inbox);
        }
        let header = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;App EUI;App Key;NwkKey;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey;Cas d'usage;Nombre de grandeurs";
        let mut csv: Vec<String> = vec![format!("{header}\n"); self.sc.members.len()];
        for (gi, g) in self.sc.devices.iter().enumerate() {
            let home = self.sc.member_index(&g.member)?;
            let class = if g.class == "C" {
                DeviceClass::C
            } else {
                DeviceClass::A
            };
            let join_eui = self.sc.join_eui(&g.member)?;
            for i in 0..g.count {
                let eui = self.sc.dev_eui(gi, i);
                let e = eui.to_string();
                let app = key_for(&[&e, &e])?;
                let (row_keys, sim) = if g.activation == "otaa" {
                    (
                        format!("{join_eui};{e}{e};;1.0.3;OTAA;;;"),
                        SimDevice::otaa(MacVersion::V1_0_3, class, eui, join_eui, app, app),
                    )
                } else {
                    let addr = self.sc.dev_addr(gi, i)?;
                    let a = addr.to_string();
                    let nwk = key_for(&[&e, &a, &a])?;
                    let aps = key_for(&[&a, &e, &a])?;
                    (
                        format!(";;;1.0.3;ABP;{a};{e}{a}{a};{a}{e}{a}"),
                        SimDevice::abp(
                            MacVersion::V1_0_3,
                            class,
                            eui,
                            DeviceSession::abp_10(addr, nwk, aps),
                        ),
                    )
                };
                csv[home].push_str(&format!(
                    "{} {};SN-{e};NONE;47.39;0.69;SERVICE;{}/{};{e};{};{row_keys};{};{}\n",
                    g.name,
                    i + 1,
                    group_label(&g.member),
                    gi,
                    g.class,
                    if g.use_case == "water_metering" {
                        "eau"
                    } else {
                        "autre"
                    },
                    g.quantities
                ));
                self.devices.push(Device {
                    group: gi,
                    eui,
                    sim,
                    joined: g.activation == "abp",
                });
            }
        }
        for (m, body) in csv.into_iter().enumerate() {
            if body.lines().count() <= 1 {
                continue;
            }
            let r = self
                .node(m)?
                .api(reqwest::Method::POST, "/v1/devices/import")
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("import on {}: {}", self.sc.members[m].id, r.text().await?);
            }
        }
        step(&format!(
            "provisioned {} gateways and {} devices in {} groups",
            self.gws.iter().map(Vec::len).sum::<usize>(),
            self.devices.len(),
            self.sc.devices.len()
        ));
        Ok(())
    }

    /// Each agreement: the guest proposes it over its API, the host approves it.
    pub async fn agree(&mut self) -> Result<()> {
        for spec in self.sc.agreements.clone() {
            let mut a = match &spec.file {
                Some(f) => {
                    let p = self.sc.dir.join(f);
                    let t = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    toml::from_str::<entente_agreements::Agreement>(&t)
                        .with_context(|| format!("{}", p.display()))?
                }
                None => crate::agreement::transit(
                    &spec.id,
                    &spec.host,
                    &spec.guest,
                    &[],
                    spec.messages_per_day,
                    Utc::now(),
                ),
            };
            a.id = spec.id.clone();
            a.version = 1;
            a.host = spec.host.clone();
            a.guest = spec.guest.clone();
            a.start = Utc::now() - chrono::TimeDelta::days(1);
            let template = a.users.first().cloned();
            a.users = spec
                .groups
                .iter()
                .map(|name| {
                    let gi = self.sc.devices.iter().position(|d| &d.name == name).unwrap_or(0);
                    let g = &self.sc.devices[gi];
                    let devices: std::collections::BTreeSet<DevEui> =
                        (0..g.count).map(|i| self.sc.dev_eui(gi, i)).collect();
                    let mut u = template.clone().unwrap_or_else(|| {
                        crate::agreement::transit("x", &spec.host, &spec.guest, &[], 1, Utc::now()).users[0]
                            .clone()
                    });
                    u.name = name.clone();
                    u.devices_volume = devices.len() as u32;
                    u.devices = devices;
                    u.messages_per_day = spec.messages_per_day;
                    u.flows = a.flows.clone();
                    u
                })
                .collect();
            a.billing = match &spec.billing {
                Some(r) => entente_agreements::Billing::Policy { reference: r.clone() },
                None => entente_agreements::Billing::Free,
            };
            let (h, g) = (
                self.sc.member_index(&spec.host)?,
                self.sc.member_index(&spec.guest)?,
            );
            crate::agreement::establish(self.node(g)?, self.node(h)?, &a).await?;
            step(&format!(
                "agreement {}: proposed by {}, approved by {}, signed by both ({} devices declared)",
                a.id,
                a.guest,
                a.host,
                a.declared_devices().len()
            ));
        }
        Ok(())
    }

    async fn push(&mut self, gws: &[(usize, usize)], phy: &[u8]) -> Result<()> {
        self.tmst = self.tmst.wrapping_add(3_000_000);
        for (k, (m, g)) in gws.iter().enumerate() {
            let body = PushData {
                rxpk: vec![rxpk(
                    phy,
                    868.1,
                    "SF9BW125",
                    -95 - 4 * k as i32,
                    6.0 - 2.0 * k as f32,
                    self.tmst,
                )],
                stat: None,
            };
            self.gws[*m][*g].push(&body, WAIT).await?;
        }
        Ok(())
    }

    fn hearing(&self, group: usize, day: u32, n: usize) -> Vec<usize> {
        let g = &self.sc.devices[group];
        let all: Vec<usize> = g
            .heard_by
            .iter()
            .filter_map(|m| self.sc.member_index(m).ok())
            .collect();
        // A vehicle spends the day in one coverage area and the next day in the next one.
        let _ = n;
        if g.mobile {
            vec![all[day as usize % all.len()]]
        } else {
            all
        }
    }

    /// One day: outages start, joins, uplinks, Class C downlinks; outages end; every
    /// node's clock moves a day.
    pub async fn day(&mut self, d: u32) -> Result<String> {
        if d > 0 {
            // Everything of the day before has arrived (and is counted) before midnight.
            self.settle(Duration::from_secs(10)).await;
            self.advance(86_400).await?;
        }
        let date = self.today().await?;
        self.days_run.push(date);
        let mut notes = Vec::new();
        for o in self.sc.outages.clone().iter().filter(|o| o.day == d) {
            let m = self.sc.member_index(&o.member)?;
            if let Some(n) = self.nodes[m].take() {
                n.kill9().await?;
                notes.push(format!("{} node killed (-9)", o.member));
            }
        }
        let mut sent = 0u64;
        for i in 0..self.devices.len() {
            let gi = self.devices[i].group;
            let g = self.sc.devices[gi].clone();
            let home = self.sc.member_index(&g.member)?;
            if !self.devices[i].joined {
                // OTAA through the first gateway of the first member that hears it.
                let m = self.hearing(gi, d, 0)[0];
                if self.nodes[m].is_none() || self.nodes[home].is_none() {
                    continue;
                }
                // Downlinks for other devices may wait at this gateway: skip them.
                while self.gws[m][0]
                    .next_downlink(Duration::from_millis(1))
                    .await
                    .is_ok()
                {}
                let jr = self.devices[i].sim.join_request();
                self.push(&[(m, 0)], &jr).await?;
                let deadline = tokio::time::Instant::now() + WAIT;
                loop {
                    let dl = self.gws[m][0].next_downlink(WAIT).await?;
                    if dl.phy_payload.first().is_some_and(|h| h >> 5 == 1) {
                        self.devices[i].sim.accept_join(&dl.phy_payload)?;
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        bail!("no join accept for {}", self.devices[i].eui);
                    }
                }
                self.devices[i].joined = true;
                self.joins += 1;
            }
            for k in 0..g.messages_per_day {
                let heard = self.hearing(gi, d, k as usize);
                let gws: Vec<(usize, usize)> = heard
                    .iter()
                    .filter(|m| self.nodes[**m].is_some())
                    .flat_map(|m| (0..self.gws[*m].len()).map(move |g| (*m, g)))
                    .collect();
                let phy = self.devices[i]
                    .sim
                    .uplink(2, &[0x01, d as u8, k as u8], false, 3, 0)?;
                sent += 1;
                // A frame reaches home if a live node hears it and home is up, or if a
                // visited node hears it (it waits there while home is down).
                let reaches = gws.iter().any(|(m, _)| *m != home || self.nodes[home].is_some());
                if gws.is_empty() || !reaches {
                    self.lost_to_outage += 1;
                    continue;
                }
                self.push(&gws, &phy).await?;
                self.expected[home] += 1;
            }
            if g.downlinks_per_day > 0 && self.nodes[home].is_some() {
                for _ in 0..g.downlinks_per_day {
                    let path = format!("/v1/devices/{}/queue", self.devices[i].eui);
                    if self
                        .node(home)?
                        .post_json(&path, &json!({"fport": 10, "data": "01"}))
                        .await
                        .is_ok()
                    {
                        self.downlinks_requested += 1;
                    }
                }
            }
        }
        for o in self.sc.outages.clone().iter().filter(|o| o.day == d) {
            let m = self.sc.member_index(&o.member)?;
            // Uplinks heard meanwhile by neighbours wait for it, then flow on reconnection.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let n = NodeProcess::start(&self.exe, &self.dirs[m]).await?;
            self.nodes[m] = Some(n);
            self.connect_gateways(m, false).await?;
            self.wait_connected().await?;
            notes.push(format!("{} node restarted, federation re-formed", o.member));
        }
        Ok(format!(
            "day {} ({date}): {sent} uplinks sent{}",
            d + 1,
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            }
        ))
    }

    async fn advance(&self, secs: i64) -> Result<()> {
        for n in self.live() {
            n.post_json("/v1/clock", &json!({"advance_secs": secs})).await?;
        }
        Ok(())
    }

    async fn now(&self) -> Result<DateTime<Utc>> {
        let v = self
            .live()
            .next()
            .context("no node up")?
            .get_json("/v1/clock")
            .await?;
        Ok(DateTime::parse_from_rfc3339(v["now"].as_str().unwrap_or_default())?.to_utc())
    }

    async fn today(&self) -> Result<NaiveDate> {
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

    /// The hosts sign each day's usage statement; the guests answer.
    pub async fn statements(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for a in &self.sc.agreements {
            let h = self.node(self.sc.member_index(&a.host)?)?;
            for day in &self.days_run {
                h.post_json("/v1/ledger/statements", &json!({"agreement": a.id, "day": day}))
                    .await?;
            }
            let path = format!("/v1/ledger/statements?agreement={}", a.id);
            // Answers normally come back within a second; the ledger's 30 s reconciliation
            // makes good any that did not, so wait for one round of it.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
            let v = loop {
                let v = h.get_json(&path).await?;
                let done = v["statements"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["status"] != "awaiting") && !s.is_empty());
                if done || tokio::time::Instant::now() > deadline {
                    break v;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            out.push(
                json!({"agreement": a.id, "host": a.host, "guest": a.guest, "statements": v["statements"]}),
            );
        }
        Ok(out)
    }

    /// The billing period: every node's clock moves to 2 January next year; each host
    /// invoices the year on the objects declared on 1 January; the payer accepts.
    pub async fn billing(&self) -> Result<Vec<Value>> {
        let now = self.now().await?;
        let next = Utc
            .with_ymd_and_hms(now.year() + 1, 1, 2, 9, 0, 0)
            .single()
            .context("calendar")?;
        self.advance((next - now).num_seconds().max(0)).await?;
        let mut out = Vec::new();
        for a in self.sc.agreements.iter().filter(|a| a.billing.is_some()) {
            let h = self.node(self.sc.member_index(&a.host)?)?;
            let g = self.node(self.sc.member_index(&a.guest)?)?;
            let v = h
                .post_json(
                    "/v1/ledger/invoices",
                    &json!({"agreement": a.id, "year": next.year()}),
                )
                .await?;
            let seq = v["record"]["seq"].as_u64().unwrap_or(0);
            let path = format!("/v1/ledger/invoices?agreement={}", a.id);
            let deadline = tokio::time::Instant::now() + WAIT;
            while g.get_json(&path).await?["invoices"]
                .as_array()
                .is_none_or(|i| i.iter().all(|i| i["seq"] != seq))
            {
                if tokio::time::Instant::now() > deadline {
                    bail!("the invoice of {} did not reach {}", a.id, a.guest);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            g.post_json(
                "/v1/ledger/accept",
                &json!({"agreement": a.id, "issuer": a.host, "seq": seq}),
            )
            .await?;
            let deadline = tokio::time::Instant::now() + WAIT;
            let accepted = loop {
                let i = h.get_json(&path).await?;
                let acc = i["invoices"]
                    .as_array()
                    .and_then(|l| l.iter().find(|x| x["seq"] == seq).cloned());
                if acc.as_ref().is_some_and(|x| x["accepted"] == true)
                    || tokio::time::Instant::now() > deadline
                {
                    break acc.unwrap_or(Value::Null);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            out.push(json!({"agreement": a.id, "invoice": v["invoice"], "accepted": accepted["accepted"], "signed_by": accepted["signed_by"]}));
        }
        Ok(out)
    }

    /// Each node's ledger exported (JSON and CSV) and checked offline against the roster.
    pub async fn verify_ledgers(&self) -> Result<Vec<Value>> {
        let roster = entente_peering::Roster::load(&self.roster)?;
        let keys = |m: &MemberId| roster.member(m).map(|m| m.public_key);
        let exports = self.base.join("exports");
        std::fs::create_dir_all(&exports)?;
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let entries: Vec<entente_ledger::chain::Entry> =
                serde_json::from_value(n.get_json("/v1/ledger").await?)?;
            let id = &self.sc.members[m].id;
            let json_path = exports.join(format!("{id}-ledger.json"));
            std::fs::write(&json_path, serde_json::to_vec_pretty(&entries)?)?;
            std::fs::write(
                exports.join(format!("{id}-ledger.csv")),
                entente_ledger::chain::to_csv(&entries),
            )?;
            let result = entente_ledger::chain::verify(&entries, &keys);
            out.push(json!({
                "member": id, "records": entries.len(), "export": json_path.display().to_string(),
                "verified": result.is_ok(), "error": result.err().map(|e| e.to_string()),
            }));
        }
        Ok(out)
    }

    /// Share of each member's devices heard within a day and within 14 days.
    pub async fn sla(&self) -> Result<Vec<Value>> {
        let now = self.now().await?;
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let (mut total, mut day, mut fortnight) = (0u64, 0u64, 0u64);
            for d in self
                .devices
                .iter()
                .filter(|d| self.sc.devices[d.group].member == self.sc.members[m].id)
            {
                total += 1;
                let v = n.get_json(&format!("/v1/devices/{}", d.eui)).await?;
                if let Some(t) = v["session"]["last_seen"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                {
                    let age = now - t.to_utc();
                    day += (age <= chrono::TimeDelta::hours(24)) as u64;
                    fortnight += (age <= chrono::TimeDelta::days(14)) as u64;
                }
            }
            if total > 0 {
                out.push(json!({
                    "member": self.sc.members[m].id, "devices": total,
                    "heard_24h_pct": (day * 1000 / total) as f64 / 10.0,
                    "heard_14d_pct": (fortnight * 1000 / total) as f64 / 10.0,
                    "targets": {"heard_24h_pct": 90.0, "heard_14d_pct": 95.0},
                }));
            }
        }
        Ok(out)
    }

    /// Per node: frames, devices, roaming each way, refusals.
    pub async fn traffic_report(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let metrics = n.metrics().await?;
            let sum = |prefix: &str, result: &[&str]| -> BTreeMap<String, f64> {
                let mut by_peer = BTreeMap::new();
                for l in metrics.lines().filter(|l| l.starts_with(prefix)) {
                    let (Some((labels, v)), true) = (
                        l.rsplit_once(' '),
                        result.iter().any(|r| l.contains(&format!("result=\"{r}\""))),
                    ) else {
                        continue;
                    };
                    let peer = labels
                        .split("peer=\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .unwrap_or("");
                    *by_peer.entry(peer.to_string()).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
                }
                by_peer
            };
            let by_label = |prefix: &str, label: &str| -> BTreeMap<String, f64> {
                let mut m = BTreeMap::new();
                for l in metrics.lines().filter(|l| l.starts_with(prefix)) {
                    let Some((labels, v)) = l.rsplit_once(' ') else {
                        continue;
                    };
                    let key = labels
                        .split(&format!("{label}=\""))
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .unwrap_or("")
                        .to_string();
                    *m.entry(key).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
                }
                m
            };
            let refusals = n.get_json("/v1/refusals").await?;
            let id = &self.sc.members[m].id;
            out.push(json!({
                "member": id,
                "devices": self.devices.iter().filter(|d| &self.sc.devices[d.group].member == id).count(),
                "uplinks_accepted": metric(&metrics, "entente_lns_uplinks_accepted_total").unwrap_or(0.0),
                "joins_accepted": metric(&metrics, "entente_lns_joins_accepted_total").unwrap_or(0.0),
                "delivered_to_application": self.inboxes[m].count(),
                "expected_at_home": self.expected[m],
                "roamed_out_as_visited": sum("entente_roaming_forwarded_total", &["accepted", "late_accepted"]),
                "roamed_in_as_home": sum("entente_roaming_received_total", &["accepted", "accepted_late"]),
                "downlinks_through_peers": sum("entente_roaming_downlinks_total", &["sent_ok"]),
                "refusals": refusals["frames"],
                "lns_rejected": by_label("entente_lns_rejected_total", "reason"),
                "delivery_attempts": by_label("entente_delivery_attempts_total", "result"),
            }));
        }
        Ok(out)
    }

    /// A committee review for each agreement: the guest, whose node knows when its
    /// devices were last heard, prepares it; the host countersigns the same bytes.
    pub async fn reviews(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for a in &self.sc.agreements {
            let h = self.node(self.sc.member_index(&a.guest)?)?;
            let g = self.node(self.sc.member_index(&a.host)?)?;
            let path = format!("/v1/agreements/{}", a.id);
            let v = h.post_json(&format!("{path}/review"), &json!({})).await?;
            let deadline = tokio::time::Instant::now() + WAIT;
            while g.get_json(&format!("{path}/reviews")).await?["reviews"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                if tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let c = g.post_json(&format!("{path}/review"), &json!({})).await?;
            let md = self.base.join("exports").join(format!(
                "{}-{}.md",
                a.id,
                v["review"]["quarter"].as_str().unwrap_or("review")
            ));
            std::fs::create_dir_all(self.base.join("exports"))?;
            std::fs::write(&md, c["markdown"].as_str().unwrap_or_default())?;
            out.push(json!({
                "agreement": a.id, "quarter": v["review"]["quarter"],
                "signed_by": c["signed"]["signatures"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
                "devices_declared": c["review"]["devices_declared"], "devices_seen": c["review"]["devices_seen"],
                "markdown": md.display().to_string(),
            }));
        }
        Ok(out)
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

/// Runs a scenario end to end and returns the report.
pub async fn run_scenario(sc: Scenario, base: &Path, exe: &Path) -> Result<Value> {
    let days = sc.days;
    step(&format!(
        "{} — {} members, {} days",
        sc.title,
        sc.members.len(),
        days
    ));
    let mut f = Federation::start(sc, base, exe).await?;
    let result = async {
        f.provision().await?;
        f.agree().await?;
        for d in 0..days {
            let line = f.day(d).await?;
            step(&format!("{line}; delivered so far {:?}", f.delivered()));
        }
        f.settle(Duration::from_secs(30)).await;
        let sla = f.sla().await?;
        step("committee reviews prepared and countersigned");
        let reviews = f.reviews().await?;
        step("signing the daily usage statements");
        let statements = f.statements().await?;
        step("billing period: clocks to 2 January, yearly invoices issued and accepted");
        let invoices = f.billing().await?;
        let ledgers = f.verify_ledgers().await?;
        let nodes = f.traffic_report().await?;
        Ok::<Value, anyhow::Error>(json!({
            "scenario": f.sc.name, "title": f.sc.title, "base": f.base.display().to_string(),
            "nodes": nodes, "sla": sla, "statements": statements, "invoices": invoices,
            "reviews": reviews, "ledgers": ledgers, "run": f.summary(),
            "data_dirs": f.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "roster": f.roster.display().to_string(),
        }))
    }
    .await;
    let stop = f.stop().await;
    let report = result?;
    stop?;
    Ok(report)
}

fn text(r: &Value) -> String {
    let mut s = format!("\n{}\n{}\n", r["title"].as_str().unwrap_or(""), "=".repeat(72));
    s.push_str("\nNodes\n");
    for n in r["nodes"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {:<18} devices {:>3}  uplinks accepted {:>5}  joins {:>3}  delivered {:>5} (expected {})\n",
            n["member"].as_str().unwrap_or(""),
            n["devices"],
            n["uplinks_accepted"],
            n["joins_accepted"],
            n["delivered_to_application"],
            n["expected_at_home"]
        ));
        for (peer, v) in n["roamed_out_as_visited"].as_object().into_iter().flatten() {
            s.push_str(&format!("      carried for {peer}: {v} frames\n"));
        }
        for (peer, v) in n["roamed_in_as_home"].as_object().into_iter().flatten() {
            s.push_str(&format!("      received through {peer}: {v} frames\n"));
        }
        for (peer, v) in n["downlinks_through_peers"].as_object().into_iter().flatten() {
            s.push_str(&format!("      downlinks sent through {peer}'s gateways: {v}\n"));
        }
        for (k, v) in n["lns_rejected"].as_object().into_iter().flatten() {
            s.push_str(&format!("      network server refused {v} frames: {k}\n"));
        }
        for f in n["refusals"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "      refused ({} side, {}, {}): {} x {}\n",
                f["side"], f["peer"], f["flow"], f["count"], f["reason"]
            ));
        }
    }
    s.push_str("\nService levels (share of devices heard)\n");
    for x in r["sla"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {:<18} {} devices: {}% within 24 h (target 90), {}% within 14 days (target 95)\n",
            x["member"].as_str().unwrap_or(""),
            x["devices"],
            x["heard_24h_pct"],
            x["heard_14d_pct"]
        ));
    }
    s.push_str("\nUsage statements\n");
    for a in r["statements"].as_array().into_iter().flatten() {
        let st = a["statements"].as_array().cloned().unwrap_or_default();
        let count = |k: &str| st.iter().filter(|x| x["status"] == k).count();
        let frames: u64 = st.iter().filter_map(|x| x["frames"].as_u64()).sum();
        s.push_str(&format!(
            "  {}: {} daily statements signed by {}, {} countersigned by {}, {} disputed; {} frames\n",
            a["agreement"].as_str().unwrap_or(""),
            st.len(),
            a["host"],
            count("countersigned"),
            a["guest"],
            count("disputed"),
            frames
        ));
    }
    s.push_str("\nInvoices\n");
    for i in r["invoices"].as_array().into_iter().flatten() {
        let inv = &i["invoice"];
        s.push_str(&format!(
            "  {} {}: {} objects, {:.2} EUR excl. VAT + {:.2} VAT = {:.2} EUR, due {}; accepted: {} (signed by {})\n",
            i["agreement"].as_str().unwrap_or(""), inv["period_start"].as_str().unwrap_or(""),
            inv["lines"][0]["quantity"], inv["amount_excl_vat"].as_f64().unwrap_or(0.0) / 100.0,
            inv["vat"].as_f64().unwrap_or(0.0) / 100.0, inv["amount_incl_vat"].as_f64().unwrap_or(0.0) / 100.0,
            inv["due_date"].as_str().unwrap_or(""), i["accepted"], i["signed_by"]
        ));
    }
    s.push_str("\nCommittee reviews\n");
    for v in r["reviews"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {} {}: {} of {} declared devices seen, signed by {} — {}\n",
            v["agreement"].as_str().unwrap_or(""),
            v["quarter"].as_str().unwrap_or(""),
            v["devices_seen"],
            v["devices_declared"],
            v["signed_by"],
            v["markdown"].as_str().unwrap_or("")
        ));
    }
    s.push_str("\nLedgers (verified offline against the roster's keys)\n");
    for l in r["ledgers"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {:<18} {} records: {} — {}\n",
            l["member"].as_str().unwrap_or(""),
            l["records"],
            if l["verified"] == true {
                "signatures and chain verified".to_string()
            } else {
                format!("FAILED: {}", l["error"])
            },
            l["export"].as_str().unwrap_or("")
        ));
    }
    s.push_str(&format!(
        "\nRun: {} joins, {} Class C downlinks requested, {} uplinks lost while their only node was down\n",
        r["run"]["joins"], r["run"]["downlinks_requested"], r["run"]["lost_to_outage"]
    ));
    s.push_str(&format!(
        "Data dirs under {}; roster {}\n",
        r["base"].as_str().unwrap_or(""),
        r["roster"].as_str().unwrap_or("")
    ));
    s
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let path = Scenario::find(&args.scenario)?;
    let mut sc = Scenario::load(&path)?;
    if let Some(d) = args.days {
        sc.days = d.clamp(1, 366);
    }
    let base = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("entente-demo-{}-{}", sc.name, std::process::id())),
    };
    if base.exists()
        && std::fs::read_dir(&base)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        bail!("{} is not empty; pass another --dir", base.display());
    }
    let exe = std::env::current_exe().context("cannot find the entente executable")?;
    let report = run_scenario(sc, &base, &exe).await?;
    println!("{}", text(&report));
    if let Some(j) = args.json {
        std::fs::write(&j, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
        println!("JSON report: {}", j.display());
    }
    Ok(())
}
