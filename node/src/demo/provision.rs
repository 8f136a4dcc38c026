//! Set-up before the first day: gateways, application servers, devices imported on their
//! home nodes, and the agreements proposed by guests and approved by hosts.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use entente_agreements::{Agreement, AuthorisedUser, Billing};
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::DevEui;
use entente_sim::{DeviceSession, SimDevice};
use serde_json::json;

use super::federation::{Device, Federation, group_label};
use super::inbox::Inbox;
use super::step;
use crate::scenario::{AgreementSpec, DeviceGroup, Scenario};

/// The header of the device import sheet.
const HEADER: &str = "Nom;Numéro de série;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Dev EUI;Classe;App EUI;App Key;NwkKey;Version LoRaWAN;Activation;DevAddr;NwkSKey;AppSKey;Cas d'usage;Nombre de grandeurs";

fn key_for(parts: &[&str]) -> Result<AesKey> {
    let hex: String = parts.concat().chars().take(32).collect();
    hex.parse().map_err(|e| anyhow::anyhow!("device key: {e}"))
}

/// Device `i` of group `gi`: the key columns of its sheet row and its simulator.
fn device_keys(sc: &Scenario, gi: usize, i: u32) -> Result<(String, SimDevice)> {
    let g = &sc.devices[gi];
    let class = if g.class == "C" {
        DeviceClass::C
    } else {
        DeviceClass::A
    };
    let join_eui = sc.join_eui(&g.member)?;
    let eui = sc.dev_eui(gi, i);
    let e = eui.to_string();
    let app = key_for(&[&e, &e])?;
    if g.activation == "otaa" {
        return Ok((
            format!("{join_eui};{e}{e};;1.0.3;OTAA;;;"),
            SimDevice::otaa(MacVersion::V1_0_3, class, eui, join_eui, app, app),
        ));
    }
    let addr = sc.dev_addr(gi, i)?;
    let a = addr.to_string();
    let nwk = key_for(&[&e, &a, &a])?;
    let aps = key_for(&[&a, &e, &a])?;
    Ok((
        format!(";;;1.0.3;ABP;{a};{e}{a}{a};{a}{e}{a}"),
        SimDevice::abp(
            MacVersion::V1_0_3,
            class,
            eui,
            DeviceSession::abp_10(addr, nwk, aps),
        ),
    ))
}

/// Device `i` of group `g` (number `gi`) as a row of the import sheet.
fn device_row(g: &DeviceGroup, gi: usize, i: u32, eui: DevEui, row_keys: &str) -> String {
    let e = eui.to_string();
    format!(
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
    )
}

/// The agreement of `spec` before it is tailored: its file, or a transit agreement.
fn base_agreement(sc: &Scenario, spec: &AgreementSpec) -> Result<Agreement> {
    Ok(match &spec.file {
        Some(f) => {
            let p = sc.dir.join(f);
            let t = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<Agreement>(&t).with_context(|| format!("{}", p.display()))?
        }
        None => crate::agreement::transit(
            &spec.id,
            &spec.host,
            &spec.guest,
            &[],
            spec.messages_per_day,
            Utc::now(),
        ),
    })
}

/// One authorised user per device group of `spec`, modelled on the agreement's first.
fn users_for(sc: &Scenario, spec: &AgreementSpec, a: &Agreement) -> Vec<AuthorisedUser> {
    let template = a.users.first().cloned();
    spec.groups
        .iter()
        .map(|name| {
            let gi = sc.devices.iter().position(|d| &d.name == name).unwrap_or(0);
            let g = &sc.devices[gi];
            let devices: BTreeSet<DevEui> = (0..g.count).map(|i| sc.dev_eui(gi, i)).collect();
            let mut u = template.clone().unwrap_or_else(|| {
                crate::agreement::transit("x", &spec.host, &spec.guest, &[], 1, Utc::now()).users[0].clone()
            });
            u.name = name.clone();
            u.devices_volume = devices.len() as u32;
            u.devices = devices;
            u.messages_per_day = spec.messages_per_day;
            u.flows = a.flows.clone();
            u
        })
        .collect()
}

/// The agreement of `spec` as the guest proposes it: version 1, begun yesterday, its
/// users the spec's device groups, billed by the spec's policy (or free).
fn agreement_for(sc: &Scenario, spec: &AgreementSpec) -> Result<Agreement> {
    let mut a = base_agreement(sc, spec)?;
    a.id = spec.id.clone();
    a.version = 1;
    a.host = spec.host.clone();
    a.guest = spec.guest.clone();
    a.start = Utc::now() - chrono::TimeDelta::days(1);
    a.users = users_for(sc, spec, &a);
    a.billing = match &spec.billing {
        Some(r) => Billing::Policy { reference: r.clone() },
        None => Billing::Free,
    };
    Ok(a)
}

impl Federation {
    /// Gateways, application servers, and every device imported on its home node.
    pub async fn provision(&mut self) -> Result<()> {
        for m in 0..self.sc.members.len() {
            self.connect_gateways(m, true).await?;
            self.add_application(m).await?;
        }
        let sheets = self.device_sheets()?;
        self.import_devices(sheets).await?;
        step(&format!(
            "provisioned {} gateways and {} devices in {} groups",
            self.gws.iter().map(Vec::len).sum::<usize>(),
            self.devices.len(),
            self.sc.devices.len()
        ));
        Ok(())
    }

    /// Member `m`'s application server, registered on its node as an HTTP push recipient.
    async fn add_application(&mut self, m: usize) -> Result<()> {
        let inbox = Inbox::start().await?;
        self.node(m)?
            .post_json(
                "/v1/recipients",
                &json!({"name": "application", "group": group_label(&self.sc.members[m].id),
                        "kind": {"type": "http_push", "url": inbox.url}}),
            )
            .await?;
        self.inboxes.push(inbox);
        Ok(())
    }

    /// Every device of the scenario simulated, and the import sheet of each home member.
    fn device_sheets(&mut self) -> Result<Vec<String>> {
        let mut csv: Vec<String> = vec![format!("{HEADER}\n"); self.sc.members.len()];
        for (gi, g) in self.sc.devices.iter().enumerate() {
            let home = self.sc.member_index(&g.member)?;
            for i in 0..g.count {
                let eui = self.sc.dev_eui(gi, i);
                let (row_keys, sim) = device_keys(&self.sc, gi, i)?;
                csv[home].push_str(&device_row(g, gi, i, eui, &row_keys));
                self.devices.push(Device {
                    group: gi,
                    eui,
                    sim,
                    joined: g.activation == "abp",
                });
            }
        }
        Ok(csv)
    }

    /// Imports each member's sheet on its node (members without devices are skipped).
    async fn import_devices(&self, sheets: Vec<String>) -> Result<()> {
        for (m, body) in sheets.into_iter().enumerate() {
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
        Ok(())
    }

    /// Each agreement: the guest proposes it over its API, the host approves it.
    pub async fn agree(&mut self) -> Result<()> {
        for spec in &self.sc.agreements {
            let a = agreement_for(&self.sc, spec)?;
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
}
