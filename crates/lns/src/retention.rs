//! Uplinks are kept for the node's retention (`lns.uplink_retention`), then purged. A
//! device's uplinks are stored in the order they came (key: device, sequence number), so
//! the purge walks each device's oldest ones and jumps to the next device at the first it
//! keeps: the work grows with devices and purged uplinks, never with those kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entente_model::DevEui;
use entente_store::{Durability, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::server::NetworkServer;
use crate::tables::Uplinks;

/// How often the purge runs (and once at start).
const EVERY: Duration = Duration::from_secs(6 * 3600);
/// Deletes written per batch.
const BATCH: usize = 10_000;

impl NetworkServer {
    /// Deletes every uplink received before `now - retention`; returns how many.
    pub fn purge_uplinks(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let horizon = now - self.cfg.uplink_retention;
        let mut purged = 0u64;
        let mut batch = self.store.batch();
        let mut device = Some(DevEui([0; 8]));
        while let Some(from) = device.take() {
            for r in self.store.range_from::<Uplinks>(&(from, 0))? {
                let ((eui, seq), u) = r?;
                if u.received_at < horizon {
                    batch.delete::<Uplinks>(&(eui, seq))?;
                    purged += 1;
                    if batch.len() >= BATCH {
                        let full = std::mem::replace(&mut batch, self.store.batch());
                        self.store.write(full, Durability::Buffered)?;
                    }
                    continue;
                }
                // The first this device keeps: the rest of its uplinks are newer.
                device = eui.to_u64().checked_add(1).map(DevEui::from_u64);
                break;
            }
        }
        self.store.write(batch, Durability::Buffered)?;
        self.metrics.uplinks_purged.inc_by(purged);
        Ok(purged)
    }

    /// Purges at start, then every few hours, on a blocking thread.
    pub async fn run_retention(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let ns = self.clone();
            let now = self.now();
            match tokio::task::spawn_blocking(move || ns.purge_uplinks(now)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(
                    purged = n,
                    retention_days = self.cfg.uplink_retention.num_days(),
                    "old uplinks purged"
                ),
                Ok(Err(e)) => warn!(error = %e, "uplink purge failed; retried later"),
                Err(e) => warn!(error = %e, "uplink purge stopped"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use entente_model::DevAddr;

    use crate::device::{DeviceClass, MacVersion};
    use crate::testkit::*;

    #[tokio::test]
    async fn uplinks_older_than_the_retention_go_and_the_others_stay() {
        let h = Harness::new();
        let devices: Vec<_> = (1..=3)
            .map(|i| {
                abp_device(
                    eui(i),
                    DevAddr(0x2600_0000 + u32::from(i)),
                    profile(MacVersion::V1_0_3, DeviceClass::A),
                )
            })
            .collect();
        h.ns.create_devices(&devices).unwrap();
        let mut sims: Vec<_> = devices.iter().map(abp_sim).collect();
        for round in 0..4u8 {
            if round == 2 {
                h.clock.advance(chrono::TimeDelta::days(10));
            }
            for sim in &mut sims {
                h.uplink(
                    &sim.uplink(1, &[round], false, 5, 0).unwrap(),
                    vec![rx(1, 0.0, 5)],
                );
            }
        }
        assert_eq!(h.ns.metrics.uplinks_accepted.get(), 12);
        let retention = h.ns.cfg.uplink_retention;
        let stored = |eui| h.ns.uplinks(&eui, 0, 100).unwrap();
        let first = stored(devices[0].dev_eui)[0].received_at;
        assert_eq!(
            h.ns.purge_uplinks(first + retention).unwrap(),
            0,
            "nothing is old yet"
        );
        // A day past the retention of the first two rounds: those go, the last two stay.
        assert_eq!(
            h.ns.purge_uplinks(first + retention + chrono::TimeDelta::days(1))
                .unwrap(),
            6
        );
        for d in &devices {
            let kept: Vec<u8> = stored(d.dev_eui).iter().map(|u| u.payload[0]).collect();
            assert_eq!(kept, vec![2, 3], "{}", d.dev_eui);
        }
        assert_eq!(h.ns.metrics.uplinks_purged.get(), 6);
    }
}
