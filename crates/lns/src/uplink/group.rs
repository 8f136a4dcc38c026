//! Frames whose dedup windows closed together are processed as one group: under one hold
//! of the session lock, with the writes of all their data uplinks in one synced batch. An
//! uplink counts as accepted (metric, hook, Class A answer) only once that batch is
//! durable, and one fsync covers the whole group.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};

use entente_gateway::{Arrival, RxInfo, Verdict};
use entente_model::{DevAddr, DevEui};
use entente_store::{Batch, Durability};
use tracing::{debug, warn};

use crate::device::DeviceClass;
use crate::downlink::DownlinkPlan;
use crate::metrics::Rejection;
use crate::server::NetworkServer;
use crate::session_index::SessionIndex;

use super::Waiters;

/// Uplinks staged at most before the group is written (bounds a burst's latency).
pub(crate) const MAX_STAGED: usize = 1024;

pub(crate) struct Group<'a> {
    ns: &'a Arc<NetworkServer>,
    staged: Option<Staged<'a>>,
}

/// The group's data uplinks, written to the batch but not yet to the database.
pub(crate) struct Staged<'a> {
    pub index: MutexGuard<'a, SessionIndex>,
    pub batch: Batch<'a>,
    /// DevAddrs staged: a second frame for one waits until the first is written, so it
    /// reads the session the first one left.
    addrs: HashSet<DevAddr, foldhash::fast::RandomState>,
    accepted: Vec<Accepted>,
    /// A staging step failed half-way: the batch may hold part of an uplink, so none of
    /// it is written.
    failed: bool,
}

impl Staged<'_> {
    pub(crate) fn accept(&mut self, a: Accepted) {
        self.accepted.push(a);
    }

    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }
}

/// What an uplink still does once its batch is durable.
pub(crate) struct Accepted {
    pub dev_eui: DevEui,
    pub fcnt: u32,
    pub class: DeviceClass,
    pub answer: Option<DownlinkPlan>,
    /// Every gateway's reception, best first: the answer goes through the first.
    pub rx: Vec<RxInfo>,
    pub arrival: Arrival,
    /// The peers that forwarded the frame, told once it is durable.
    pub waiters: Waiters,
}

impl Accepted {
    pub(crate) fn committed(mut self, ns: &Arc<NetworkServer>) {
        if let Some(h) = ns.hook.as_ref() {
            h.committed();
        }
        ns.metrics.uplinks_accepted.inc();
        debug!(dev_eui = %self.dev_eui, fcnt = self.fcnt, gateways = self.rx.len(), "uplink accepted");
        std::mem::take(&mut self.waiters).tell(Verdict::Verified);
        self.answer(ns);
    }

    /// The Class A answer; a Class C device without one may have downlinks that waited
    /// for its first uplink.
    pub(crate) fn answer(self, ns: &Arc<NetworkServer>) {
        match self.answer {
            Some(p) => ns.spawn_class_a(p, self.rx),
            None if self.class == DeviceClass::C && self.arrival == Arrival::Live => {
                ns.send_class_c(self.dev_eui)
            }
            None => {}
        }
    }
}

impl<'a> Group<'a> {
    pub(crate) fn new(ns: &'a Arc<NetworkServer>) -> Self {
        Group { ns, staged: None }
    }

    /// The staged writes a data uplink for `addr` joins, after writing the group first
    /// when it already holds one for that address or is full.
    pub(crate) fn for_addr(&mut self, addr: DevAddr) -> &mut Staged<'a> {
        let full = self
            .staged
            .as_ref()
            .is_some_and(|s| s.addrs.contains(&addr) || s.accepted.len() >= MAX_STAGED);
        if full {
            self.commit();
        }
        let ns = self.ns;
        let staged = self.staged.get_or_insert_with(|| Staged {
            index: ns.lock_sessions(),
            batch: ns.store.batch(),
            addrs: HashSet::default(),
            accepted: Vec::new(),
            failed: false,
        });
        staged.addrs.insert(addr);
        staged
    }

    /// Writes the staged uplinks durably, then lets each count and answer; releases the
    /// session lock.
    pub(crate) fn commit(&mut self) {
        let Some(staged) = self.staged.take() else {
            return;
        };
        let Staged {
            index,
            batch,
            accepted,
            failed,
            ..
        } = staged;
        let written = match (failed, batch.is_empty()) {
            (true, _) => Err("a staging step failed".to_string()),
            (false, true) => Ok(()),
            (false, false) => self
                .ns
                .store
                .write(batch, Durability::Sync)
                .map_err(|e| e.to_string()),
        };
        drop(index);
        match written {
            Ok(()) => accepted.into_iter().for_each(|a| a.committed(self.ns)),
            Err(error) => {
                warn!(%error, uplinks = accepted.len(), "uplinks not written");
                for a in accepted {
                    self.ns.metrics.reject(Rejection::Store);
                    a.waiters.tell(Verdict::Rejected(Rejection::Store.as_str()));
                }
            }
        }
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        self.commit();
    }
}

#[cfg(test)]
mod tests {
    use entente_frame::UplinkFrame;

    use super::*;
    use crate::device::MacVersion;
    use crate::testkit::*;

    const ADDR: DevAddr = DevAddr(0x2600_0001);

    fn data(h: &Harness, group: &mut Group<'_>, bytes: Vec<u8>) -> Result<(), Rejection> {
        let frame = UplinkFrame::parse(bytes).unwrap();
        let copies = (vec![rx(1, 0.0, 5)], entente_gateway::Arrival::Live);
        h.ns.process_data(frame.data().unwrap(), copies, &mut Waiters::heard_here(), group)
            .map(|_| ())
    }

    #[tokio::test]
    async fn uplinks_count_only_once_their_group_is_written() {
        let h = Harness::new();
        let devices: Vec<_> = (1..=3)
            .map(|i| {
                abp_device(
                    eui(i),
                    DevAddr(ADDR.0 + u32::from(i)),
                    profile(MacVersion::V1_0_3, DeviceClass::A),
                )
            })
            .collect();
        h.ns.create_devices(&devices).unwrap();
        let mut group = Group::new(&h.ns);
        for d in &devices {
            data(&h, &mut group, abp_sim(d).uplink(1, b"x", false, 5, 0).unwrap()).unwrap();
        }
        assert_eq!(h.ns.metrics.uplinks_accepted.get(), 0, "staged, not yet durable");
        assert!(h.ns.uplinks(&devices[0].dev_eui, 0, 10).unwrap().is_empty());
        group.commit();
        assert_eq!(h.ns.metrics.uplinks_accepted.get(), 3);
        for d in &devices {
            assert_eq!(h.ns.uplinks(&d.dev_eui, 0, 10).unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_second_frame_of_a_staged_device_reads_the_session_the_first_left() {
        let h = Harness::new();
        let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_1, DeviceClass::A));
        h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
        let mut sim = abp_sim(&d);
        let first = sim.uplink(1, b"a", false, 5, 0).unwrap();
        let second = sim.uplink(1, b"b", false, 5, 0).unwrap();
        let mut group = Group::new(&h.ns);
        data(&h, &mut group, first.clone()).unwrap();
        data(&h, &mut group, second).unwrap();
        // The first frame again, after both: an old counter, refused as a replay.
        assert_eq!(data(&h, &mut group, first), Err(Rejection::Replay));
        group.commit();
        assert_eq!(h.ns.metrics.uplinks_accepted.get(), 2);
        assert_eq!(h.session(d.dev_eui).fcnt_up, Some(1));
    }

    #[tokio::test]
    async fn a_group_whose_staging_failed_writes_nothing_and_counts_every_uplink_refused() {
        let h = Harness::new();
        let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
        h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
        let mut group = Group::new(&h.ns);
        data(&h, &mut group, abp_sim(&d).uplink(1, b"x", false, 5, 0).unwrap()).unwrap();
        group.for_addr(DevAddr(0x2600_0099)).fail();
        group.commit();
        assert_eq!(h.ns.metrics.uplinks_accepted.get(), 0);
        let store = crate::metrics::ReasonLabel {
            reason: Rejection::Store.as_str(),
        };
        assert_eq!(h.ns.metrics.rejected.get_or_create(&store).get(), 1);
        assert_eq!(h.session(d.dev_eui).fcnt_up, None);
        assert!(h.ns.uplinks(&d.dev_eui, 0, 10).unwrap().is_empty());
    }
}
