//! `node.toml`: defined, read and checked in `entente_settings` (a leaf the fuzz target
//! `node_toml` reads it with, without RocksDB), used from here.

pub use entente_settings::node::{
    ApiSection, ConfigError, LogFilterError, LogSection, NodeConfig, NodeSection,
};
