//! The network server as the ledger reads it: the seam that keeps `entente-ledger` free of
//! `entente-lns`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entente_ledger::{DeviceDirectory, DeviceFacts};
use entente_lns::{NetworkServer, UseCase};
use entente_model::{DevAddr, DevEui};

pub struct LnsDirectory(pub Arc<NetworkServer>);

impl DeviceDirectory for LnsDirectory {
    fn device(&self, eui: &DevEui) -> Option<DeviceFacts> {
        let d = self.0.device(eui).ok()?;
        Some(DeviceFacts {
            use_case: match d.profile.use_case {
                UseCase::WaterMetering => "water_metering",
                UseCase::Other => "other",
            },
            quantities: u32::from(d.profile.measured_quantities),
            equipment: d.equipment,
            reference: d.reference,
            address: d.address,
            sub_group: d.sub_group,
        })
    }

    fn first_uplink(&self, eui: &DevEui) -> Option<DateTime<Utc>> {
        self.0.uplinks(eui, 0, 1).ok()?.first().map(|u| u.received_at)
    }

    fn last_seen(&self, eui: &DevEui) -> Option<DateTime<Utc>> {
        self.0.session(eui).ok().flatten().and_then(|s| s.last_seen)
    }

    fn device_at(&self, addr: DevAddr) -> Option<DevEui> {
        self.0.devices_at(addr).ok()?.first().copied()
    }
}
