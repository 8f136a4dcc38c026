//! Frames whose dedup windows closed together are processed as one group: under one hold
//! of the session lock, with the writes of all their data uplinks in one synced batch. An
//! uplink counts as accepted (metric, hook, Class A answer) only once that batch is
//! durable, and one fsync covers the whole group.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};

use entente_gateway::RxInfo;
use entente_model::{DevAddr, DevEui};
use entente_store::{Batch, Durability};
use tracing::{debug, warn};

use crate::device::DeviceClass;
use crate::downlink::DownlinkPlan;
use crate::metrics::Rejection;
use crate::server::NetworkServer;
use crate::session_index::SessionIndex;

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
}

impl Accepted {
    pub(crate) fn committed(self, ns: &Arc<NetworkServer>) {
        if let Some(h) = ns.hook.as_ref() {
            h.committed();
        }
        ns.metrics.uplinks_accepted.inc();
        debug!(dev_eui = %self.dev_eui, fcnt = self.fcnt, gateways = self.rx.len(), "uplink accepted");
        self.answer(ns);
    }

    /// The Class A answer; a Class C device without one may have downlinks that waited
    /// for its first uplink.
    pub(crate) fn answer(self, ns: &Arc<NetworkServer>) {
        match self.answer {
            Some(p) => ns.spawn_class_a(p, self.rx),
            None if self.class == DeviceClass::C => ns.send_class_c(self.dev_eui),
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
                for _ in &accepted {
                    self.ns.metrics.reject(Rejection::Store);
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
