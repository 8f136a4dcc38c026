//! A read cache of the encoded values of the tables that ask for one
//! ([`Table::CACHED`](crate::Table::CACHED)): point reads of hot rows (device sessions,
//! device records) skip RocksDB.
//!
//! Kept exact by two rules. Writes that touch a cached table hold the cache lock across
//! the RocksDB write and then overwrite the cached entries with what they wrote (a
//! delete leaves a "known absent" entry), so the cache follows the database's write
//! order. A read that missed inserts what it read only if no entry appeared meanwhile, so
//! a value read before a concurrent write never replaces the one that write cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries kept per table; beyond it an arbitrary entry makes room (the database still
/// answers for it).
pub const MAX_ENTRIES_PER_TABLE: usize = 1 << 18;

/// `None` value: known to be absent.
type Entries = HashMap<Box<[u8]>, Option<Arc<[u8]>>>;

#[derive(Default)]
pub(crate) struct ValueCache {
    tables: Mutex<HashMap<&'static str, Entries>>,
}

/// A change a batch makes to a cached table, applied once the batch is written.
pub(crate) struct Change {
    pub table: &'static str,
    pub key: Box<[u8]>,
    pub value: Option<Arc<[u8]>>,
}

impl ValueCache {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<&'static str, Entries>> {
        // A poisoned lock only means a panic elsewhere mid-update of plain maps.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(entry)` when the cache knows the key (`entry` is `None` for absent).
    pub(crate) fn get(&self, table: &'static str, key: &[u8]) -> Option<Option<Arc<[u8]>>> {
        self.lock().get(table)?.get(key).cloned()
    }

    /// Remembers what a read found, unless a write cached something meanwhile.
    pub(crate) fn fill(&self, table: &'static str, key: &[u8], value: Option<&[u8]>) {
        let mut t = self.lock();
        let entries = t.entry(table).or_default();
        if entries.contains_key(key) {
            return;
        }
        make_room(entries);
        entries.insert(key.into(), value.map(Arc::from));
    }

    /// Applies a written batch's changes (the caller holds the lock across the write).
    pub(crate) fn apply(tables: &mut HashMap<&'static str, Entries>, changes: Vec<Change>) {
        for c in changes {
            let entries = tables.entry(c.table).or_default();
            if !entries.contains_key(&c.key) {
                make_room(entries);
            }
            entries.insert(c.key, c.value);
        }
    }
}

fn make_room(entries: &mut Entries) {
    if entries.len() >= MAX_ENTRIES_PER_TABLE {
        if let Some(k) = entries.keys().next().cloned() {
            entries.remove(&k);
        }
    }
}
