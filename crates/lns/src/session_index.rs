//! What the session lock guards besides the sessions themselves: two in-memory indexes
//! that spare every uplink a RocksDB iterator. They stay exact because what they describe
//! is only written while the lock is held: the DevAddr index by device creation and
//! deletion and by joins, queue items by every put (`enqueue`, Class A and Class C sends).

use std::collections::{HashMap, HashSet};

use entente_model::{DevAddr, DevEui};
use entente_store::{Store, StoreError};

use crate::tables::{DevAddrIndex, DownlinkQueue};

/// DevAddrs remembered at most; beyond it an arbitrary one makes room (the database still
/// answers for it).
const MAX_ADDRS: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct SessionIndex {
    /// DevAddr -> the devices whose session uses it, read from RocksDB on first use.
    by_addr: HashMap<DevAddr, Vec<DevEui>, foldhash::fast::RandomState>,
    /// Devices that may have queued downlinks: every device with an item is here; a queue
    /// read that finds nothing takes the device out.
    queued: HashSet<DevEui, foldhash::fast::RandomState>,
}

impl SessionIndex {
    /// Starts with every device that has a queued downlink; also returns the newest
    /// queue item's id (sequence numbers continue after it), from the same scan.
    pub(crate) fn load(store: &Store) -> Result<(Self, u64), StoreError> {
        let mut index = SessionIndex::default();
        let mut newest = 0;
        for r in store.iter::<DownlinkQueue>()? {
            let ((eui, id), _) = r?;
            index.queued.insert(eui);
            newest = newest.max(id);
        }
        Ok((index, newest))
    }

    /// The devices whose session uses `addr`.
    pub(crate) fn devices_at(&mut self, store: &Store, addr: DevAddr) -> Result<&[DevEui], StoreError> {
        if !self.by_addr.contains_key(&addr) {
            let found = read_devices_at(store, addr)?;
            if self.by_addr.len() >= MAX_ADDRS
                && let Some(k) = self.by_addr.keys().next().copied()
            {
                self.by_addr.remove(&k);
            }
            self.by_addr.insert(addr, found);
        }
        Ok(self.by_addr.get(&addr).map(Vec::as_slice).unwrap_or_default())
    }

    /// A write changed which devices use `addr`; the next use reads it again.
    pub(crate) fn addr_changed(&mut self, addr: DevAddr) {
        self.by_addr.remove(&addr);
    }

    /// Called before an item for `eui` is written to the queue.
    pub(crate) fn queueing(&mut self, eui: DevEui) {
        self.queued.insert(eui);
    }

    pub(crate) fn may_have_queue(&self, eui: &DevEui) -> bool {
        self.queued.contains(eui)
    }

    /// A queue read found nothing for `eui`.
    pub(crate) fn queue_empty(&mut self, eui: &DevEui) {
        self.queued.remove(eui);
    }
}

/// The DevAddr index's rows for `addr`, from RocksDB.
pub(crate) fn read_devices_at(store: &Store, addr: DevAddr) -> Result<Vec<DevEui>, StoreError> {
    let mut v = Vec::new();
    for r in store.range_from::<DevAddrIndex>(&(addr, DevEui([0; 8])))? {
        let ((a, eui), ()) = r?;
        if a != addr {
            break;
        }
        v.push(eui);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use entente_store::Durability;

    use super::*;

    const ADDR: DevAddr = DevAddr(0x2600_0001);

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sealed(
            dir.path(),
            crate::tables::ALL,
            entente_store::Sealer::ephemeral().unwrap(),
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn an_address_is_read_once_until_a_write_changes_it() {
        let (_d, s) = store();
        let (mut index, _) = SessionIndex::load(&s).unwrap();
        assert!(index.devices_at(&s, ADDR).unwrap().is_empty());
        s.put::<DevAddrIndex>(&(ADDR, DevEui([1; 8])), &(), Durability::Buffered)
            .unwrap();
        assert!(
            index.devices_at(&s, ADDR).unwrap().is_empty(),
            "remembered until told"
        );
        index.addr_changed(ADDR);
        assert_eq!(index.devices_at(&s, ADDR).unwrap(), [DevEui([1; 8])]);
    }

    #[test]
    fn queued_devices_are_loaded_and_forgotten_only_when_found_empty() {
        let (_d, s) = store();
        let item = crate::tables::QueueItem {
            id: 7,
            fport: 1,
            payload: vec![1],
            confirmed: false,
            sent_fcnt: None,
            attempts: 0,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        s.put::<DownlinkQueue>(&(DevEui([2; 8]), 7), &item, Durability::Buffered)
            .unwrap();
        let (mut index, newest) = SessionIndex::load(&s).unwrap();
        assert_eq!(newest, 7);
        assert!(index.may_have_queue(&DevEui([2; 8])));
        assert!(!index.may_have_queue(&DevEui([3; 8])));
        index.queueing(DevEui([3; 8]));
        assert!(index.may_have_queue(&DevEui([3; 8])));
        index.queue_empty(&DevEui([3; 8]));
        assert!(!index.may_have_queue(&DevEui([3; 8])));
    }
}
