//! A read cache of the decoded values of the tables that ask for one
//! ([`Table::CACHED`](crate::Table::CACHED)): point reads of hot rows (device sessions,
//! device records) skip RocksDB and the decoder.
//!
//! Kept exact by two rules. Writes that touch a cached table hold the cache lock across
//! the RocksDB write and then overwrite the cached entries with what they wrote (a
//! delete leaves a "known absent" entry), so the cache follows the database's write
//! order. A read that missed inserts what it read only if no entry appeared meanwhile, so
//! a value read before a concurrent write never replaces the one that write cached.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries kept per table; beyond it an arbitrary entry makes room (the database still
/// answers for it).
pub const MAX_ENTRIES_PER_TABLE: usize = 1 << 18;

/// A decoded value of the table the entry belongs to.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// An encoded key, kept inline when short (every cached table's is), so a lookup reads
/// the key beside its slot instead of chasing a pointer.
pub(crate) type Key = smallvec::SmallVec<[u8; 24]>;

/// `None` value: known to be absent.
type Entries = HashMap<Key, Option<Value>, foldhash::fast::RandomState>;

/// The entries of each cached table, by the table's name.
#[derive(Default)]
pub(crate) struct Tables(HashMap<&'static str, Entries, foldhash::fast::RandomState>);

impl Tables {
    fn of(&mut self, table: &'static str) -> &mut Entries {
        self.0.entry(table).or_default()
    }
}

#[derive(Default)]
pub(crate) struct ValueCache {
    tables: Mutex<Tables>,
}

/// A change a batch makes to a cached table, applied once the batch is written.
pub(crate) struct Change {
    pub table: &'static str,
    pub key: Key,
    pub value: Option<Value>,
}

impl ValueCache {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        // A poisoned lock only means a panic elsewhere mid-update of plain maps.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(entry)` when the cache knows the key (`entry` is `None` for absent).
    pub(crate) fn get(&self, table: &'static str, key: &[u8]) -> Option<Option<Value>> {
        let mut t = self.lock();
        t.of(table).get(key).cloned()
    }

    /// Remembers what a read found, unless a write cached something meanwhile.
    pub(crate) fn fill(&self, table: &'static str, key: &[u8], value: Option<Value>) {
        let mut t = self.lock();
        let entries = t.of(table);
        if entries.contains_key(key) {
            return;
        }
        make_room(entries);
        entries.insert(Key::from_slice(key), value);
    }

    /// Applies a written batch's changes (the caller holds the lock across the write).
    pub(crate) fn apply(tables: &mut Tables, changes: Vec<Change>) {
        for c in changes {
            let entries = tables.of(c.table);
            // One lookup when there is room, the common case.
            if entries.len() >= MAX_ENTRIES_PER_TABLE && !entries.contains_key(&c.key) {
                make_room(entries);
            }
            entries.insert(c.key, c.value);
        }
    }
}

fn make_room(entries: &mut Entries) {
    if entries.len() >= MAX_ENTRIES_PER_TABLE
        && let Some(k) = entries.keys().next().cloned()
    {
        entries.remove(&k);
    }
}
