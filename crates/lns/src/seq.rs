//! Sequence numbers of uplinks and queue items: unique and increasing across restarts,
//! without reading the stored uplinks at start. The store keeps a ceiling; numbers are
//! handed out below it, and the ceiling moves a block ahead (one synced write) before a
//! number reaches it. A restart begins at the stored ceiling, so at most a block of
//! numbers is skipped, never one reused.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use entente_store::{Durability, Store, StoreError, Table};

use crate::tables::Uplinks;

/// Numbers handed out between two writes of the ceiling.
const BLOCK: u64 = 1 << 20;

/// The first number a restart may hand out. One row, key 0.
pub struct SeqCeiling;
impl Table for SeqCeiling {
    const NAME: &'static str = "lns_seq_ceiling";
    type Key = u8;
    type Value = u64;
}

pub(crate) struct Sequence {
    next: AtomicU64,
    /// Numbers below it are covered by the stored ceiling; moved under its lock.
    ceiling: AtomicU64,
    moving: Mutex<()>,
}

impl Sequence {
    /// Starts at the stored ceiling. A store written before the ceiling existed is read
    /// once, for its newest uplink and queue item (`newest_queued`).
    pub(crate) fn load(store: &Store, newest_queued: u64) -> Result<Self, StoreError> {
        let start = match store.get::<SeqCeiling>(&0)? {
            Some(c) => c,
            None => newest_uplink(store)?.max(newest_queued).saturating_add(1),
        };
        let ceiling = start.saturating_add(BLOCK);
        store.put::<SeqCeiling>(&0, &ceiling, Durability::Sync)?;
        Ok(Sequence {
            next: AtomicU64::new(start),
            ceiling: AtomicU64::new(ceiling),
            moving: Mutex::new(()),
        })
    }

    /// The next number; the ceiling moves first when the number would reach it.
    pub(crate) fn next(&self, store: &Store) -> Result<u64, StoreError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n < self.ceiling.load(Ordering::Acquire) {
            return Ok(n);
        }
        let _moving = self.moving.lock().unwrap_or_else(|p| p.into_inner());
        let ceiling = self.ceiling.load(Ordering::Acquire);
        if n >= ceiling {
            let moved = n.saturating_add(BLOCK);
            store.put::<SeqCeiling>(&0, &moved, Durability::Sync)?;
            self.ceiling.store(moved, Ordering::Release);
        }
        Ok(n)
    }
}

/// The newest uplink's number, by a scan: only for a store from before the ceiling.
fn newest_uplink(store: &Store) -> Result<u64, StoreError> {
    let mut max = 0u64;
    for r in store.iter::<Uplinks>()? {
        max = max.max(r?.0.1);
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::ALL;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(dir, ALL).unwrap()
    }

    #[test]
    fn numbers_grow_across_restarts_without_reading_the_uplinks() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let store = open(dir.path());
            let s = Sequence::load(&store, 0).unwrap();
            (0..3).map(|_| s.next(&store).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(first, vec![1, 2, 3]);
        let store = open(dir.path());
        let s = Sequence::load(&store, 0).unwrap();
        assert_eq!(
            s.next(&store).unwrap(),
            1 + BLOCK,
            "a restart starts at the ceiling"
        );
    }

    #[test]
    fn the_ceiling_moves_before_a_number_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put::<SeqCeiling>(&0, &10, Durability::Sync).unwrap();
        let s = Sequence::load(&store, 0).unwrap();
        s.ceiling.store(12, Ordering::Release);
        let got: Vec<u64> = (0..3).map(|_| s.next(&store).unwrap()).collect();
        assert_eq!(got, vec![10, 11, 12]);
        assert_eq!(store.get::<SeqCeiling>(&0).unwrap(), Some(12 + BLOCK));
    }
}
