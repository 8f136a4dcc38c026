use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteOptions};

use crate::cache::{Change, ValueCache};
use crate::key::{KeyCodec, encode};
use crate::lock::DirLock;
use crate::{Meta, SCHEMA_VERSION, SealError, Sealer, StoreError, Table};

/// The column family of the start-up check of the master key, and its one row.
const SEAL_CHECK: &str = "seal_check";
const CANARY: &[u8] = b"entente master key check";

/// Whether a write must reach the disk before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the WAL, fsync'd: survives a power cut. For the ledger and acknowledged data.
    Sync,
    /// In the WAL, left to the OS: survives a process crash (kill -9), not a power cut.
    Buffered,
}

/// One RocksDB database per node.
pub struct Store {
    db: DB,
    dir: PathBuf,
    cache: ValueCache,
    /// Seals and opens the rows of key tables; None: such tables are refused.
    sealer: Option<Sealer>,
    _lock: DirLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` with a column family for each table
    /// name. Fails with [`StoreError::Locked`] when another process holds the directory.
    /// Tables that hold keys ([`Table::SEALED`]) need [`Store::open_sealed`].
    pub fn open(dir: &Path, tables: &[&'static str]) -> Result<Self, StoreError> {
        Self::open_with(dir, tables, None)
    }

    /// Like [`Store::open`], sealing the rows of key tables with `sealer`.
    pub fn open_sealed(dir: &Path, tables: &[&'static str], sealer: Sealer) -> Result<Self, StoreError> {
        Self::open_with(dir, tables, Some(sealer))
    }

    fn open_with(dir: &Path, tables: &[&'static str], sealer: Option<Sealer>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        let lock = DirLock::acquire(dir)?;
        let db_dir = dir.join("db");
        let db_err = |source| StoreError::Db {
            dir: db_dir.clone(),
            source,
        };

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);

        // RocksDB must open every existing column family, including ones this version
        // no longer declares.
        let mut names: BTreeSet<String> = tables.iter().map(|s| s.to_string()).collect();
        names.insert(Meta::NAME.to_string());
        names.insert(SEAL_CHECK.to_string());
        names.insert("default".to_string());
        if db_dir.join("CURRENT").exists() {
            names.extend(DB::list_cf(&opts, &db_dir).map_err(db_err)?);
        }
        let cfs = names
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs).map_err(db_err)?;

        let store = Self {
            db,
            dir: dir.to_path_buf(),
            cache: ValueCache::default(),
            sealer,
            _lock: lock,
        };
        match store.get::<Meta>(&"schema".to_string())? {
            None => store.put::<Meta>(&"schema".to_string(), &SCHEMA_VERSION, Durability::Sync)?,
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(StoreError::Corrupt {
                    table: Meta::NAME,
                    what: "schema version",
                    reason: format!("on disk {v}, this build reads {SCHEMA_VERSION}"),
                });
            }
        }
        store.check_master_key()?;
        Ok(store)
    }

    /// A node given the wrong master key is stopped at start, not at its first uplink: a
    /// known row sealed when the database was created must open.
    fn check_master_key(&self) -> Result<(), StoreError> {
        let Some(sealer) = &self.sealer else {
            return Ok(());
        };
        let cf = self
            .db
            .cf_handle(SEAL_CHECK)
            .ok_or(StoreError::UnknownTable(SEAL_CHECK))?;
        let seal_err = |source| StoreError::Seal {
            table: SEAL_CHECK,
            source,
        };
        match self.db.get_cf(cf, CANARY).map_err(|e| self.db_err(e))? {
            Some(sealed) => match sealer.open(SEAL_CHECK, CANARY, &sealed) {
                Ok(plain) if plain == CANARY => Ok(()),
                Ok(_) => Err(seal_err(SealError::Forged)),
                Err(e) => Err(seal_err(e)),
            },
            None => {
                let mut sealed = Vec::new();
                sealer.seal(SEAL_CHECK, CANARY, CANARY, &mut sealed);
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(cf, CANARY, &sealed);
                self.write_raw(batch)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cf<T: Table>(&self) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(T::NAME)
            .ok_or(StoreError::UnknownTable(T::NAME))
    }

    fn db_err(&self, source: rocksdb::Error) -> StoreError {
        StoreError::Db {
            dir: self.dir.clone(),
            source,
        }
    }

    pub fn get<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>, StoreError> {
        let cf = self.cf::<T>()?;
        let k = encode(key);
        if T::CACHED
            && let Some(hit) = self.cache.get(T::NAME, &k)
        {
            return hit.map(|v| cached_value::<T>(&v)).transpose();
        }
        match self.db.get_pinned_cf(cf, &k).map_err(|e| self.db_err(e))? {
            Some(bytes) => {
                let value = self.decode_row::<T>(&k, &bytes)?;
                if T::CACHED {
                    self.cache.fill(T::NAME, &k, Some(Arc::new(value.clone())));
                }
                Ok(Some(value))
            }
            None => {
                if T::CACHED {
                    self.cache.fill(T::NAME, &k, None);
                }
                Ok(None)
            }
        }
    }

    /// Like [`Store::get`], sharing the cached value instead of copying it (for large
    /// rows read on every uplink).
    pub fn get_shared<T: Table>(&self, key: &T::Key) -> Result<Option<Arc<T::Value>>, StoreError> {
        if T::CACHED
            && let Some(hit) = self.cache.get(T::NAME, &encode(key))
        {
            return hit.map(|v| shared_value::<T>(v)).transpose();
        }
        Ok(self.get::<T>(key)?.map(Arc::new))
    }

    fn sealer<T: Table>(&self) -> Result<&Sealer, StoreError> {
        self.sealer.as_ref().ok_or(StoreError::NoMasterKey(T::NAME))
    }

    fn decode_row<T: Table>(&self, key: &[u8], bytes: &[u8]) -> Result<T::Value, StoreError> {
        if !T::SEALED {
            return decode_value::<T>(bytes);
        }
        let plain = self
            .sealer::<T>()?
            .open(T::NAME, key, bytes)
            .map_err(|source| StoreError::Seal {
                table: T::NAME,
                source,
            })?;
        decode_value::<T>(&plain)
    }

    /// Re-seals every row of the key tables `tables` under the current master key (after
    /// a rotation), in synced batches, the start-up check last; returns how many rows
    /// changed. Rows already under the current key are left alone, so an interrupted
    /// rotation can simply be rerun.
    pub fn reseal(&self, tables: &[&'static str]) -> Result<u64, StoreError> {
        let mut changed = 0;
        for table in tables.iter().chain([&SEAL_CHECK]) {
            changed += self.reseal_table(table)?;
        }
        Ok(changed)
    }

    fn reseal_table(&self, table: &'static str) -> Result<u64, StoreError> {
        let sealer = self.sealer.as_ref().ok_or(StoreError::NoMasterKey(table))?;
        let cf = self.db.cf_handle(table).ok_or(StoreError::UnknownTable(table))?;
        let seal_err = |source: SealError| StoreError::Seal { table, source };
        let mut batch = rocksdb::WriteBatch::default();
        let mut changed = 0u64;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if sealer.is_current(&v) {
                continue;
            }
            let plain = sealer.open(table, &k, &v).map_err(seal_err)?;
            let mut sealed = Vec::with_capacity(v.len());
            sealer.seal(table, &k, &plain, &mut sealed);
            batch.put_cf(cf, &k, &sealed);
            changed += 1;
            if batch.len() >= 1_000 {
                self.write_raw(std::mem::take(&mut batch))?;
            }
        }
        self.write_raw(batch)?;
        Ok(changed)
    }

    fn write_raw(&self, batch: rocksdb::WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.db_err(e))
    }

    pub fn put<T: Table>(
        &self,
        key: &T::Key,
        value: &T::Value,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.put::<T>(key, value)?;
        self.write(b, durability)
    }

    pub fn delete<T: Table>(&self, key: &T::Key, durability: Durability) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.delete::<T>(key)?;
        self.write(b, durability)
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            inner: rocksdb::WriteBatch::default(),
            cached: Vec::new(),
            scratch: Vec::with_capacity(512),
            sealed: Vec::new(),
        }
    }

    /// Applies every change of the batch, or none of them.
    pub fn write(&self, batch: Batch<'_>, durability: Durability) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Sync);
        if batch.cached.is_empty() {
            return self.db.write_opt(batch.inner, &wo).map_err(|e| self.db_err(e));
        }
        // Held across the write, so cached entries follow the database's write order.
        let mut cache = self.cache.lock();
        self.db.write_opt(batch.inner, &wo).map_err(|e| self.db_err(e))?;
        ValueCache::apply(&mut cache, batch.cached);
        Ok(())
    }

    /// Every entry of a table in key order.
    pub fn iter<T: Table>(&self) -> Result<Iter<'_, T>, StoreError> {
        self.iter_from::<T>(&[])
    }

    /// Entries whose key is at or after `start`, in key order.
    pub fn range_from<T: Table>(&self, start: &T::Key) -> Result<Iter<'_, T>, StoreError> {
        self.iter_from::<T>(&encode(start))
    }

    fn iter_from<T: Table>(&self, start: &[u8]) -> Result<Iter<'_, T>, StoreError> {
        let cf = self.cf::<T>()?;
        let mode = if start.is_empty() {
            IteratorMode::Start
        } else {
            IteratorMode::From(start, Direction::Forward)
        };
        Ok(Iter {
            inner: self.db.iterator_cf(cf, mode),
            store: self,
            _t: PhantomData,
        })
    }

    /// Flushes memtables and stops background work; dropping the value then releases the
    /// lock. Called on a clean shutdown so the next start replays no WAL.
    pub fn close(self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.db_err(e))?;
        self.db.cancel_all_background_work(true);
        Ok(())
    }
}

/// A cached entry is always of its table's value type; a mismatch would be a bug in the
/// cache, reported like a corrupt row rather than a panic.
fn cached_value<T: Table>(v: &crate::cache::Value) -> Result<T::Value, StoreError> {
    v.downcast_ref::<T::Value>().cloned().ok_or(StoreError::Corrupt {
        table: T::NAME,
        what: "cached value",
        reason: "of another type".into(),
    })
}

fn shared_value<T: Table>(v: crate::cache::Value) -> Result<Arc<T::Value>, StoreError> {
    v.downcast::<T::Value>().map_err(|_| StoreError::Corrupt {
        table: T::NAME,
        what: "cached value",
        reason: "of another type".into(),
    })
}

fn decode_value<T: Table>(bytes: &[u8]) -> Result<T::Value, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: T::NAME,
        what: "value",
        reason: e.to_string(),
    })
}

/// An atomic group of changes across any tables.
pub struct Batch<'s> {
    store: &'s Store,
    inner: rocksdb::WriteBatch,
    /// Changes to cached tables, applied to the cache once the batch is written.
    cached: Vec<Change>,
    /// Where values are encoded before RocksDB copies them into the batch.
    scratch: Vec<u8>,
    /// Where the values of key tables are sealed.
    sealed: Vec<u8>,
}

impl Batch<'_> {
    pub fn put<T: Table>(&mut self, key: &T::Key, value: &T::Value) -> Result<(), StoreError> {
        let cf = self.store.cf::<T>()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let bytes = postcard::to_extend(value, scratch).map_err(|e| StoreError::Corrupt {
            table: T::NAME,
            what: "value",
            reason: e.to_string(),
        })?;
        let k = encode(key);
        if T::SEALED {
            self.sealed.clear();
            self.store
                .sealer::<T>()?
                .seal(T::NAME, &k, &bytes, &mut self.sealed);
            self.inner.put_cf(cf, &k, &self.sealed);
        } else {
            self.inner.put_cf(cf, &k, &bytes);
        }
        self.scratch = bytes;
        if T::CACHED {
            self.cached.push(Change {
                table: T::NAME,
                key: crate::cache::Key::from_slice(&k),
                value: Some(Arc::new(value.clone())),
            });
        }
        Ok(())
    }

    pub fn delete<T: Table>(&mut self, key: &T::Key) -> Result<(), StoreError> {
        let cf = self.store.cf::<T>()?;
        let k = encode(key);
        self.inner.delete_cf(cf, &k);
        if T::CACHED {
            self.cached.push(Change {
                table: T::NAME,
                key: crate::cache::Key::from_slice(&k),
                value: None,
            });
        }
        Ok(())
    }

    /// Deletes every key in `[from, to)` with one range tombstone: for tables whose
    /// oldest rows go in key order (journals). Not for cached tables.
    pub fn delete_range<T: Table>(&mut self, from: &T::Key, to: &T::Key) -> Result<(), StoreError> {
        if T::CACHED {
            return Err(StoreError::Corrupt {
                table: T::NAME,
                what: "range delete",
                reason: "cached tables are deleted key by key".into(),
            });
        }
        let cf = self.store.cf::<T>()?;
        self.inner.delete_range_cf(cf, encode(from), encode(to));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

pub struct Iter<'s, T: Table> {
    inner: rocksdb::DBIteratorWithThreadMode<'s, DB>,
    store: &'s Store,
    _t: PhantomData<T>,
}

impl<T: Table> Iterator for Iter<'_, T> {
    type Item = Result<(T::Key, T::Value), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        Some(match item {
            Err(source) => Err(self.store.db_err(source)),
            Ok((k, v)) => match T::Key::decode_key(&k) {
                None => Err(StoreError::Corrupt {
                    table: T::NAME,
                    what: "key",
                    reason: format!("{} bytes", k.len()),
                }),
                Some(key) => self.store.decode_row::<T>(&k, &v).map(|val| (key, val)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Row {
        name: String,
        n: u64,
    }
    struct Rows;
    impl Table for Rows {
        const NAME: &'static str = "rows";
        type Key = (u32, u64);
        type Value = Row;
    }
    struct Other;
    impl Table for Other {
        const NAME: &'static str = "other";
        type Key = u64;
        type Value = String;
    }

    fn row(n: u64) -> Row {
        Row {
            name: format!("r{n}"),
            n,
        }
    }

    #[test]
    fn put_get_iterate_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Rows::NAME, Other::NAME]).unwrap();
        for n in [300u64, 2, 70_000, 1] {
            s.put::<Rows>(&(7, n), &row(n), Durability::Buffered).unwrap();
        }
        s.put::<Rows>(&(6, 999), &row(999), Durability::Buffered).unwrap();
        assert_eq!(s.get::<Rows>(&(7, 2)).unwrap(), Some(row(2)));
        assert_eq!(s.get::<Rows>(&(7, 3)).unwrap(), None);
        let keys: Vec<_> = s
            .range_from::<Rows>(&(7, 0))
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(keys, vec![(7, 1), (7, 2), (7, 300), (7, 70_000)]);
    }

    #[test]
    fn batch_is_all_or_nothing_across_tables() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Rows::NAME, Other::NAME]).unwrap();
        let mut b = s.batch();
        b.put::<Rows>(&(1, 1), &row(1)).unwrap();
        b.put::<Other>(&1, &"x".to_string()).unwrap();
        assert_eq!(s.get::<Other>(&1).unwrap(), None, "nothing visible before write");
        s.write(b, Durability::Sync).unwrap();
        assert_eq!(s.get::<Rows>(&(1, 1)).unwrap(), Some(row(1)));
        assert_eq!(s.get::<Other>(&1).unwrap().as_deref(), Some("x"));
    }

    struct Hot;
    impl Table for Hot {
        const NAME: &'static str = "hot";
        const CACHED: bool = true;
        type Key = u64;
        type Value = Row;
    }

    #[test]
    fn cached_table_follows_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Hot::NAME]).unwrap();
        assert_eq!(
            s.get::<Hot>(&1).unwrap(),
            None,
            "absent, and remembered as absent"
        );
        s.put::<Hot>(&1, &row(1), Durability::Buffered).unwrap();
        assert_eq!(s.get::<Hot>(&1).unwrap(), Some(row(1)));
        let mut b = s.batch();
        b.put::<Hot>(&1, &row(2)).unwrap();
        assert_eq!(
            s.get::<Hot>(&1).unwrap(),
            Some(row(1)),
            "unwritten batch not visible"
        );
        s.write(b, Durability::Buffered).unwrap();
        assert_eq!(s.get::<Hot>(&1).unwrap(), Some(row(2)));
        s.delete::<Hot>(&1, Durability::Buffered).unwrap();
        assert_eq!(s.get::<Hot>(&1).unwrap(), None);
        s.put::<Hot>(&1, &row(3), Durability::Sync).unwrap();
        drop(s);
        let s = Store::open(dir.path(), &[Hot::NAME]).unwrap();
        assert_eq!(
            s.get::<Hot>(&1).unwrap(),
            Some(row(3)),
            "the database, not the cache, is the truth"
        );
    }

    #[test]
    fn undeclared_table_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Rows::NAME]).unwrap();
        assert!(matches!(
            s.get::<Other>(&1),
            Err(StoreError::UnknownTable("other"))
        ));
    }

    #[test]
    fn second_open_fails_with_clear_message_and_data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Rows::NAME]).unwrap();
        s.put::<Rows>(&(1, 5), &row(5), Durability::Sync).unwrap();
        let err = Store::open(dir.path(), &[Rows::NAME]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("already in use"), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        s.close().unwrap();
        // Reopen with a table the first run did not know: old and new tables both open.
        let s = Store::open(dir.path(), &[Other::NAME]).unwrap();
        s.put::<Other>(&1, &"y".to_string(), Durability::Sync).unwrap();
        drop(s);
        let s = Store::open(dir.path(), &[Rows::NAME, Other::NAME]).unwrap();
        assert_eq!(s.get::<Rows>(&(1, 5)).unwrap(), Some(row(5)));
    }

    #[test]
    fn corrupt_value_is_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &[Rows::NAME, Other::NAME]).unwrap();
        // Same column family read through a table with another value type.
        struct Wrong;
        impl Table for Wrong {
            const NAME: &'static str = "other";
            type Key = u64;
            type Value = Row;
        }
        s.put::<Other>(&1, &"\u{7f}".to_string(), Durability::Buffered)
            .unwrap();
        assert!(matches!(s.get::<Wrong>(&1), Err(StoreError::Corrupt { .. })));
    }

    struct Secret;
    impl Table for Secret {
        const NAME: &'static str = "secret";
        const CACHED: bool = true;
        const SEALED: bool = true;
        type Key = u64;
        type Value = Row;
    }

    fn master(b: u8) -> crate::MasterKey {
        crate::MasterKey::from_hex(&hex::encode([b; 32])).unwrap()
    }

    fn files_contain(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir.join("db")).unwrap().any(|f| {
            let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    }

    #[test]
    fn sealed_rows_never_reach_the_files_in_clear_and_survive_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Row {
            name: "KEY-0f1e2d3c4b5a6978".into(),
            n: 1,
        };
        let tables = [Secret::NAME, Rows::NAME];
        let s = Store::open_sealed(dir.path(), &tables, Sealer::new(&master(1), &[]).unwrap()).unwrap();
        s.put::<Secret>(&1, &secret, Durability::Sync).unwrap();
        s.put::<Rows>(&(1, 1), &row(424_242), Durability::Sync).unwrap();
        assert!(
            files_contain(dir.path(), b"r424242"),
            "the control row is found in the WAL"
        );
        assert!(!files_contain(dir.path(), b"KEY-0f1e2d3c4b5a6978"), "WAL");
        s.close().unwrap();
        assert!(
            files_contain(dir.path(), b"r424242"),
            "the control row is found in an SST"
        );
        assert!(!files_contain(dir.path(), b"KEY-0f1e2d3c4b5a6978"), "SST");

        let s = Store::open(dir.path(), &tables).unwrap();
        assert!(matches!(
            s.get::<Secret>(&1),
            Err(StoreError::NoMasterKey("secret"))
        ));
        assert!(matches!(
            s.put::<Secret>(&2, &secret, Durability::Sync),
            Err(StoreError::NoMasterKey("secret"))
        ));
        drop(s);
        let wrong =
            Store::open_sealed(dir.path(), &tables, Sealer::new(&master(9), &[]).unwrap()).unwrap_err();
        let e = wrong.to_string();
        assert!(
            e.contains(&master(1).id().to_string()),
            "refused at open, naming the key: {e}"
        );

        let rotating = Sealer::new(&master(2), &[master(1)]).unwrap();
        let s = Store::open_sealed(dir.path(), &tables, rotating).unwrap();
        assert_eq!(
            s.reseal(&[Secret::NAME]).unwrap(),
            2,
            "the row and the start-up check"
        );
        assert_eq!(
            s.reseal(&[Secret::NAME]).unwrap(),
            0,
            "a rerun has nothing left to do"
        );
        drop(s);
        let s = Store::open_sealed(dir.path(), &tables, Sealer::new(&master(2), &[]).unwrap()).unwrap();
        assert_eq!(s.get::<Secret>(&1).unwrap(), Some(secret.clone()));
        assert_eq!(
            s.iter::<Secret>()
                .unwrap()
                .map(|r| r.unwrap().1)
                .collect::<Vec<_>>(),
            vec![secret]
        );
    }
}
