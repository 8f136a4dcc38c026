//! The convention as data. One model serves the Tours / SMO roaming convention, the
//! Aix-Marseille metropole / communes model and an operator / hosted-member services
//! convention: roles, services, SLA, fair use and billing are fields, not shapes.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
pub use entente_model::Flow;
use entente_model::{DevEui, MemberId};
use serde::{Deserialize, Serialize};

/// The seven services of the roaming convention (001 art. 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Transit,
    RoutingToRecipients,
    DeviceGroupAdmin,
    EquipmentStatus,
    Statistics,
    IncidentReporting,
    MaintenanceNotices,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Transit,
        Service::RoutingToRecipients,
        Service::DeviceGroupAdmin,
        Service::EquipmentStatus,
        Service::Statistics,
        Service::IncidentReporting,
        Service::MaintenanceNotices,
    ];
}

/// What each party is in the agreement (003: host, depositor or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the network (or the furniture) and carries the other's devices.
    Host,
    /// Owns devices carried by the other's network.
    Depositor,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    DeepIndoor,
    Indoor,
    Outdoor,
}

/// An authorised user and every field of its access request (001 art. 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorisedUser {
    pub name: String,
    pub public_service_mission: String,
    /// Duration of need and calendar, as the request states it.
    pub duration: String,
    pub coverage: Vec<Coverage>,
    /// Volume and location of devices over time.
    pub devices_volume: u32,
    pub devices_location: String,
    pub flows: BTreeSet<Flow>,
    /// Messages per device per day, declared.
    pub messages_per_day: u32,
    pub devices: BTreeSet<DevEui>,
    /// The devices' LoRaWAN class, as the request declares it: the host relays downlinks
    /// at any time (Class C) only under an agreement that declares Class C devices.
    #[serde(default, skip_serializing_if = "DeclaredClass::is_a")]
    pub class: DeclaredClass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclaredClass {
    #[default]
    A,
    C,
}

impl DeclaredClass {
    fn is_a(&self) -> bool {
        *self == DeclaredClass::A
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sla {
    /// Best effort: means, not results (003).
    None,
    /// Share of devices heard within a day and within 14 days (001 annex 1 §5).
    Targets { day_pct: f64, fortnight_pct: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Renewal {
    /// Ends at start + duration unless amended (Tours / SMO: 10 years).
    Fixed,
    /// Renewed each year after the first term unless notice is given (003).
    TacitYearly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenHomeUnreachable {
    Buffer,
    Drop,
}

/// Fair-use caps and flags (003): checked against the usage counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairUse {
    pub max_messages_per_device_per_day: Option<u32>,
    pub max_bytes_per_device_per_day: Option<u64>,
    pub no_real_time: bool,
    pub no_personal_data: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Billing {
    /// Free by design (003 today), not a price of zero.
    Free,
    /// A rule of `policies/` (e.g. `tours-metropole/annual-declared`).
    Policy { reference: String },
}

/// One version of a convention: everything both parties sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub host: MemberId,
    pub guest: MemberId,
    pub host_role: Role,
    pub guest_role: Role,
    pub services: BTreeSet<Service>,
    pub users: Vec<AuthorisedUser>,
    pub flows: BTreeSet<Flow>,
    pub share_signal_quality: bool,
    pub share_gateway_location: bool,
    /// The host may use the guest's data passing through its network.
    pub host_data_use_consent: bool,
    pub sla: Sla,
    pub fair_use: FairUse,
    pub billing: Billing,
    pub start: DateTime<Utc>,
    pub duration_months: u32,
    pub renewal: Renewal,
    pub notice_months: u32,
    /// Difference tolerated between the two sides' counts, in per mille.
    pub count_tolerance_per_mille: u32,
    pub max_copies_per_frame: u8,
    pub when_home_unreachable: WhenHomeUnreachable,
    /// Device count or message frequency growth (per cent) that needs the host's approval.
    pub substantial_change_pct: u32,
    /// Accounts with admin rights on the guest's device group (the committee reviews them).
    #[serde(default)]
    pub admin_accounts: Vec<AdminAccount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminAccount {
    pub holder: String,
    pub member: MemberId,
    /// What it may administer, e.g. the device group's name.
    pub scope: String,
}

/// The most messages a device can declare a day: one a second.
pub const MAX_MESSAGES_PER_DAY: u32 = 86_400;

impl Agreement {
    /// What an agreement's figures may be, whoever wrote it (an operator's file or a
    /// peer's proposal): an id that is a plain key in tables, CSV and paths, a term and a
    /// notice the calendar can hold, a tolerance and a threshold that mean something.
    pub fn validate(&self) -> Result<(), String> {
        if !crate::Dossier::valid_id(&self.id) {
            return Err(format!(
                "{:?} is not an agreement id (1 to 64 of a-z, A-Z, 0-9, '-', '_', '.')",
                self.id
            ));
        }
        if self.host == self.guest {
            return Err("host and guest must be two members".into());
        }
        let earliest = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default(); // 2000-01-01
        let latest = DateTime::<Utc>::from_timestamp(7_258_118_400, 0).unwrap_or_default(); // 2200-01-01
        if !(earliest..latest).contains(&self.start) {
            return Err(format!("start {} is outside 2000..2200", self.start));
        }
        let bounded = [
            ("duration_months", self.duration_months, 1, 1200),
            ("notice_months", self.notice_months, 0, 120),
            (
                "count_tolerance_per_mille",
                self.count_tolerance_per_mille,
                0,
                1000,
            ),
            ("substantial_change_pct", self.substantial_change_pct, 0, 10_000),
        ];
        for (field, value, min, max) in bounded {
            if !(min..=max).contains(&value) {
                return Err(format!("{field} {value} is outside {min}..{max}"));
            }
        }
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.messages_per_day > MAX_MESSAGES_PER_DAY)
        {
            return Err(format!(
                "user {:?}: messages_per_day {} is over {MAX_MESSAGES_PER_DAY}",
                u.name, u.messages_per_day
            ));
        }
        Ok(())
    }

    /// Every DevEUI declared by any user.
    pub fn declared_devices(&self) -> BTreeSet<DevEui> {
        self.users
            .iter()
            .flat_map(|u| u.devices.iter().copied())
            .collect()
    }

    /// Messages per second the guest's declared traffic allows, with headroom, for the
    /// per-agreement rate limit.
    pub fn rate_per_second(&self) -> u32 {
        let per_day: u64 = self
            .users
            .iter()
            .map(|u| u.devices.len() as u64 * u.messages_per_day.max(1) as u64)
            .sum();
        // Traffic is bursty (meters read on the hour): allow 100 x the daily average.
        ((per_day * 100).div_ceil(86_400)).clamp(1, u32::MAX as u64) as u32
    }

    pub fn parties(&self) -> [&MemberId; 2] {
        [&self.host, &self.guest]
    }

    /// Whether `new` changes the load substantially compared with this version, swaps
    /// devices (some dropped, others named: at equal count too), or declares Class C
    /// devices where there were none: each waits for the host. Growth under the
    /// threshold takes effect at once, as the convention says.
    pub fn is_substantial_change(&self, new: &Agreement) -> bool {
        let (before, after) = (self.declared_devices(), new.declared_devices());
        let swapped = !before.is_subset(&after) && !after.is_subset(&before);
        let class_c = |a: &Agreement| a.users.iter().any(|u| u.class == DeclaredClass::C);
        if swapped || (class_c(new) && !class_c(self)) {
            return true;
        }
        let grow = |old: u64, new: u64| {
            let (old, new) = (u128::from(old), u128::from(new));
            old == 0 && new > 0 || new * 100 > old * (100 + u128::from(self.substantial_change_pct))
        };
        let devices = |a: &Agreement| a.declared_devices().len() as u64;
        let freq = |a: &Agreement| {
            a.users
                .iter()
                .map(|u| u.messages_per_day as u64)
                .max()
                .unwrap_or(0)
        };
        grow(devices(self), devices(new)) || grow(freq(self), freq(new))
    }
}
