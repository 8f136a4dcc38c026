//! The journal of acknowledged frames. A PUSH_ACK tells the gateway its datagram arrived;
//! the frames it carried are written here (one row per received batch, in the WAL, not
//! fsync'd: a kill -9 keeps it) before the ack leaves. The network server forgets a row
//! once every frame in it is safe elsewhere (stored, or kept for its home node), and at
//! start takes back whatever a crash left here. So nothing a gateway was told arrived is
//! lost with the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entente_frame::UplinkFrame;
use entente_store::{Durability, Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::frame::RxInfo;
use crate::seam::Uplink;

/// A row's number: rows are written in this order, and forgotten by ranges of it.
pub type Mark = u64;

/// One frame as it was acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acked {
    frame: UplinkFrame,
    rx: RxInfo,
}

/// The frames of one received batch, under the batch's [`Mark`].
pub struct AckedFrames;

impl Table for AckedFrames {
    const NAME: &'static str = "acked_frames";
    type Key = Mark;
    type Value = Vec<Acked>;
}

/// Writes and forgets rows; the node has one, shared by the gateway server (writes) and
/// the network server (forgets).
pub struct Journal {
    store: Arc<Store>,
    /// The mark the next row gets: past every row found at start.
    next: AtomicU64,
}

impl Journal {
    pub const TABLES: [&'static str; 1] = [AckedFrames::NAME];

    /// Opens the journal and takes back what a crash left in it: the frames of every row,
    /// each with its row's mark, oldest first. A row that cannot be read is skipped (and
    /// said); it is forgotten with the others.
    pub fn open(store: Arc<Store>) -> Result<(Self, Vec<Uplink>), StoreError> {
        let mut left = Vec::new();
        let mut next = 0;
        for row in store.iter::<AckedFrames>()? {
            match row {
                Ok((mark, frames)) => {
                    next = mark.saturating_add(1);
                    left.extend(frames.into_iter().map(|a| Uplink {
                        frame: a.frame,
                        rx: a.rx,
                        journal: Some(mark),
                    }));
                }
                Err(e) => warn!(error = %e, "unreadable row of acknowledged frames skipped"),
            }
        }
        let journal = Journal {
            store,
            next: AtomicU64::new(next),
        };
        Ok((journal, left))
    }

    /// Writes one batch's frames as one row; returns its mark.
    pub fn keep<'a>(&self, frames: impl Iterator<Item = &'a Uplink>) -> Result<Mark, StoreError> {
        let row: Vec<Acked> = frames
            .map(|u| Acked {
                frame: u.frame.clone(),
                rx: u.rx.clone(),
            })
            .collect();
        let mark = self.next.fetch_add(1, Ordering::Relaxed);
        self.store.put::<AckedFrames>(&mark, &row, Durability::Buffered)?;
        Ok(mark)
    }

    /// Forgets every row before `mark`, from `from` on (the first not yet forgotten).
    pub fn forget(&self, from: Mark, mark: Mark) -> Result<(), StoreError> {
        if mark <= from {
            return Ok(());
        }
        let mut batch = self.store.batch();
        batch.delete_range::<AckedFrames>(&from, &mark)?;
        self.store.write(batch, Durability::Buffered)
    }

    /// The mark the next row will get: every row written so far is before it.
    pub fn next_mark(&self) -> Mark {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use entente_model::GatewayEui;
    use entente_region::{Bandwidth, DataRate};

    fn uplink(fcnt: u8) -> Uplink {
        // An unconfirmed data uplink of DevAddr 01020304 (the MIC is not checked here).
        let phy = vec![0x40, 4, 3, 2, 1, 0, fcnt, 0, 1, 0xaa, 1, 2, 3, 4];
        Uplink {
            frame: UplinkFrame::parse(phy).unwrap(),
            rx: RxInfo {
                gateway: GatewayEui::from_u64(1),
                tmst: 7,
                time: None,
                gps_time_ms: None,
                received_at: Utc::now(),
                frequency_hz: 868_100_000,
                channel: 0,
                rf_chain: 0,
                data_rate: DataRate::lora(7, Bandwidth::Khz125),
                coding_rate: Some("4/5".into()),
                rssi: -70,
                snr: 7.5,
            },
            journal: None,
        }
    }

    fn reopen(dir: &std::path::Path) -> (Journal, Vec<Uplink>) {
        let store = Arc::new(Store::open(dir, &Journal::TABLES).unwrap());
        Journal::open(store).unwrap()
    }

    #[test]
    fn what_is_not_forgotten_comes_back_at_the_next_start_with_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, left) = reopen(dir.path());
            assert!(left.is_empty());
            let a = j.keep([uplink(1), uplink(2)].iter()).unwrap();
            let b = j.keep([uplink(3)].iter()).unwrap();
            let c = j.keep([uplink(4)].iter()).unwrap();
            assert_eq!((a, b, c), (0, 1, 2));
            j.forget(0, b).unwrap();
        }
        let (j, left) = reopen(dir.path());
        let fcnts: Vec<(Option<Mark>, u16)> = left
            .iter()
            .map(|u| (u.journal, u.frame.data().unwrap().fcnt16))
            .collect();
        assert_eq!(fcnts, vec![(Some(1), 3), (Some(2), 4)]);
        let rx = &left[0].rx;
        assert_eq!(
            (rx.gateway, rx.tmst, rx.snr, rx.data_rate),
            (
                GatewayEui::from_u64(1),
                7,
                7.5,
                DataRate::lora(7, Bandwidth::Khz125)
            )
        );
        assert_eq!(j.next_mark(), 3, "new rows come after those taken back");
        j.forget(1, 3).unwrap();
        drop(j);
        assert!(reopen(dir.path()).1.is_empty());
    }
}
