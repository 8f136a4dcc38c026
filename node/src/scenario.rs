//! A scenario (`scenarios/*.toml`): members with their gateways, groups of devices with
//! their traffic and who hears them, the agreements between members, outages, and the
//! number of days to run. The demo and the end-to-end tests run them on real nodes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use entente_model::{DevAddr, DevEui, JoinEui, MemberId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Simulated days of traffic (each one a test-clock day on every node).
    pub days: u32,
    pub members: Vec<MemberSpec>,
    pub devices: Vec<DeviceGroup>,
    #[serde(default)]
    pub agreements: Vec<AgreementSpec>,
    #[serde(default)]
    pub outages: Vec<Outage>,
    /// Where the file was read from (agreement files are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    pub id: MemberId,
    pub name: String,
    pub kind: String,
    pub dev_addr_block: String,
    pub join_eui_range: String,
    #[serde(default)]
    pub gateways: Vec<GatewaySpec>,
    /// The communes the member's network serves (shown in the report).
    #[serde(default)]
    pub communes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroup {
    pub name: String,
    /// The home member (its node holds the devices' keys).
    pub member: MemberId,
    pub count: u32,
    /// `water_metering` or `other`.
    pub use_case: String,
    /// `A` or `C`.
    pub class: String,
    /// `abp` or `otaa`.
    pub activation: String,
    pub messages_per_day: u32,
    /// Members whose gateways hear these devices.
    pub heard_by: Vec<MemberId>,
    /// Crosses from one coverage area to the next each day instead of being heard by all.
    #[serde(default)]
    pub mobile: bool,
    /// Class C downlinks a day, sent from the home node's API.
    #[serde(default)]
    pub downlinks_per_day: u32,
    #[serde(default = "one")]
    pub quantities: u8,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementSpec {
    pub id: String,
    pub host: MemberId,
    pub guest: MemberId,
    /// A convention file (agreement model, TOML) to start from; its id, parties, users'
    /// devices and start are replaced by the scenario's.
    #[serde(default)]
    pub file: Option<String>,
    /// Device groups declared under it.
    pub groups: Vec<String>,
    /// Messages per device and day declared.
    #[serde(default = "day24")]
    pub messages_per_day: u32,
    /// A billing policy of `policies/` (none: free).
    #[serde(default)]
    pub billing: Option<String>,
}

fn day24() -> u32 {
    24
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub member: MemberId,
    /// The node is killed (-9) at the start of this day and restarted at its end.
    pub day: u32,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut s: Scenario =
            toml::from_str(&text).with_context(|| format!("{} is not a valid scenario", path.display()))?;
        s.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        s.check().with_context(|| format!("{}", path.display()))?;
        Ok(s)
    }

    /// `scenarios/NAME.toml` under the current directory or next to the executable's
    /// checkout; a path is taken as it is.
    pub fn find(name: &str) -> Result<PathBuf> {
        let p = Path::new(name);
        if p.extension().is_some_and(|e| e == "toml") && p.exists() {
            return Ok(p.to_path_buf());
        }
        let mut roots = vec![std::env::current_dir()?];
        if let Ok(exe) = std::env::current_exe() {
            roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
        }
        for r in roots {
            let c = r.join("scenarios").join(format!("{name}.toml"));
            if c.exists() {
                return Ok(c);
            }
        }
        bail!("no scenario {name:?} (looked for scenarios/{name}.toml)")
    }

    fn check(&self) -> Result<()> {
        if self.days == 0 || self.days > 366 {
            bail!("days must be 1 to 366");
        }
        for (i, g) in self.devices.iter().enumerate() {
            let home = self
                .member_index(&g.member)
                .with_context(|| format!("device group {:?}", g.name))?;
            if g.count == 0 || g.count > 255 {
                bail!("device group {:?}: count must be 1 to 255", g.name);
            }
            if !matches!(g.class.as_str(), "A" | "C") || !matches!(g.activation.as_str(), "abp" | "otaa") {
                bail!("device group {:?}: class A or C, activation abp or otaa", g.name);
            }
            if g.heard_by.is_empty() {
                bail!("device group {:?}: heard_by names no member", g.name);
            }
            for m in &g.heard_by {
                self.member_index(m)
                    .with_context(|| format!("device group {:?}", g.name))?;
            }
            let _ = (i, home);
        }
        for a in &self.agreements {
            self.member_index(&a.host)?;
            self.member_index(&a.guest)?;
            for g in &a.groups {
                if !self.devices.iter().any(|d| &d.name == g) {
                    bail!("agreement {}: no device group {g:?}", a.id);
                }
            }
        }
        for o in &self.outages {
            self.member_index(&o.member)?;
        }
        Ok(())
    }

    pub fn member_index(&self, id: &MemberId) -> Result<usize> {
        self.members
            .iter()
            .position(|m| &m.id == id)
            .with_context(|| format!("{id} is not a member of the scenario"))
    }

    /// A device's DevEUI: 70B3D5E7, the home member, the group, the device.
    pub fn dev_eui(&self, group: usize, i: u32) -> DevEui {
        let m = self.member_index(&self.devices[group].member).unwrap_or(0) as u8;
        DevEui([0x70, 0xb3, 0xd5, 0xe7, m, group as u8, 0, i as u8])
    }

    /// An ABP device's DevAddr, inside its home member's block.
    pub fn dev_addr(&self, group: usize, i: u32) -> Result<DevAddr> {
        let m = &self.members[self.member_index(&self.devices[group].member)?];
        let base = m
            .dev_addr_block
            .split('/')
            .next()
            .and_then(|b| u32::from_str_radix(b, 16).ok())
            .with_context(|| format!("{}: bad dev_addr_block", m.id))?;
        Ok(DevAddr(base + ((group as u32) << 8) + i))
    }

    pub fn join_eui(&self, member: &MemberId) -> Result<JoinEui> {
        let m = &self.members[self.member_index(member)?];
        m.join_eui_range
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{}: bad join_eui_range", m.id))
    }
}
