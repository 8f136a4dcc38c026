//! RocksDB storage: one column family per table, typed big-endian keys, atomic write
//! batches, and a lock file so two processes never share one data directory.

mod cache;
mod db;
mod key;
mod lock;
mod seal;

pub use db::{Batch, Durability, Store};
pub use key::{FixedKey, KeyCodec};
pub use seal::{KeyId, MasterKey, SealError, Sealer};

use std::path::PathBuf;

/// A typed table stored in its own column family.
pub trait Table {
    /// Column-family name; stable forever once data exists.
    const NAME: &'static str;
    /// Point reads are served from an in-memory copy of the decoded values, kept exact
    /// on every write through the store (for small, hot rows read on every uplink).
    const CACHED: bool = false;
    /// Rows hold keys: sealed under the node's master key ([`Sealer`]) before they are
    /// written, so the files on disk never hold them in clear.
    const SEALED: bool = false;
    type Key: KeyCodec;
    type Value: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data directory {dir} is already in use by another entente process{}; stop it or choose another data_dir",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder: Option<u32> },
    #[error("cannot prepare data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {dir}: {source}")]
    Db {
        dir: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("table {0} was not declared when the store was opened")]
    UnknownTable(&'static str),
    #[error("table {table}: undecodable {what}: {reason}")]
    Corrupt {
        table: &'static str,
        what: &'static str,
        reason: String,
    },
    #[error("table {0} holds keys and the database was opened without the node's master key")]
    NoMasterKey(&'static str),
    #[error("table {table}: cannot open a sealed row: {source}")]
    Seal {
        table: &'static str,
        #[source]
        source: SealError,
    },
    #[error("database is closed")]
    Closed,
}

/// Internal bookkeeping (schema version).
pub struct Meta;
impl Table for Meta {
    const NAME: &'static str = "meta";
    type Key = String;
    type Value = u32;
}

/// Bumped when an on-disk layout changes incompatibly (2: timestamps of sessions,
/// uplinks and queue items as integers, `entente_model::timestamp`; 3: rows of key
/// tables sealed under the master key).
pub const SCHEMA_VERSION: u32 = 3;
