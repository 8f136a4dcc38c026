//! What the agreement tests share: two parties with keys, a Tours/SMO convention, dates.
#![allow(dead_code, unused_imports)]

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_agreements::*;
use entente_model::{DevAddr, DevEui, MemberId};
use entente_peering::{FrameFacts, Refusal, RoamingPolicy};
use std::collections::BTreeSet;

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

pub fn id(s: &str) -> MemberId {
    s.parse().unwrap()
}

pub struct Parties {
    pub tours: SigningKey,
    pub smo: SigningKey,
    pub other: SigningKey,
}

impl Parties {
    pub fn new() -> Self {
        Parties {
            tours: SigningKey::from_bytes(&[1; 32]),
            smo: SigningKey::from_bytes(&[2; 32]),
            other: SigningKey::from_bytes(&[3; 32]),
        }
    }
    pub fn keys(&self) -> impl Fn(&MemberId) -> Option<VerifyingKey> + '_ {
        move |m: &MemberId| match m.as_str() {
            "tours-metropole" => Some(self.tours.verifying_key()),
            "smo-vdln" => Some(self.smo.verifying_key()),
            "intruder" => Some(self.other.verifying_key()),
            _ => None,
        }
    }
}

/// The Tours Métropole / SMO convention: Tours hosts, the SMO's users roam, 10 years,
/// one year's notice, yearly nbO x taO fee.
pub fn tours_smo(version: u32, devices: u64) -> Agreement {
    Agreement {
        id: "tours-smo-2025".into(),
        version,
        title: "Convention de coopération Tours Métropole / SMO Val de Loire Numérique".into(),
        host: id("tours-metropole"),
        guest: id("smo-vdln"),
        host_role: Role::Host,
        guest_role: Role::Depositor,
        services: Service::ALL.into_iter().collect(),
        users: vec![AuthorisedUser {
            name: "Syndicat des eaux de la Vallée du Cher".into(),
            public_service_mission: "distribution d'eau potable".into(),
            duration: "2026-2036".into(),
            coverage: vec![Coverage::DeepIndoor],
            devices_volume: devices as u32,
            devices_location: "communes en limite de Tours Métropole".into(),
            flows: [Flow::Join, Flow::Mac, Flow::UplinkData].into_iter().collect(),
            messages_per_day: 1,
            devices: (0..devices)
                .map(|i| DevEui((0x70b3_d5e7_5e00_0000 + i).to_be_bytes()))
                .collect(),
            class: Default::default(),
        }],
        flows: [Flow::Join, Flow::Mac, Flow::UplinkData, Flow::DownlinkData]
            .into_iter()
            .collect(),
        share_signal_quality: true,
        share_gateway_location: false,
        host_data_use_consent: false,
        sla: Sla::Targets {
            day_pct: 90.0,
            fortnight_pct: 95.0,
        },
        fair_use: FairUse {
            max_messages_per_device_per_day: Some(144),
            max_bytes_per_device_per_day: None,
            no_real_time: false,
            no_personal_data: false,
        },
        billing: Billing::Policy {
            reference: "tours-metropole/annual-declared".into(),
        },
        start: t("2026-01-01T00:00:00Z"),
        duration_months: 120,
        renewal: Renewal::Fixed,
        notice_months: 12,
        count_tolerance_per_mille: 10,
        max_copies_per_frame: 3,
        when_home_unreachable: WhenHomeUnreachable::Buffer,
        substantial_change_pct: 20,
        admin_accounts: vec![],
    }
}

pub fn proposed(p: &Parties, now: DateTime<Utc>) -> (Record, SignedAgreement) {
    let s = SignedAgreement::propose(&tours_smo(1, 10), &id("smo-vdln"), &p.smo).unwrap();
    let r = Record::propose(s.clone(), &id("smo-vdln"), now, &p.keys()).unwrap();
    (r, s)
}

pub fn approved(p: &Parties, now: DateTime<Utc>) -> Record {
    let (mut r, mut s) = proposed(p, t("2025-11-01T00:00:00Z"));
    s.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.approve(s, &id("tours-metropole"), now, &p.keys()).unwrap();
    r
}

pub fn join(dev: DevEui, home: &str, visited: &str) -> FrameFacts {
    FrameFacts {
        home: id(home),
        visited: id(visited),
        flow: Flow::Join,
        dev_eui: Some(dev),
        dev_addr: None,
        downlink: false,
    }
}
