//! node.toml: the settings of every section, each with its defaults and its `validate()`,
//! and `NodeConfig`, which nests them and reads the file.
//!
//! They live in this crate rather than in the crates they configure because those
//! depend on RocksDB and the libp2p swarm: here, a leaf on `model` and `frame`, the
//! cargo-fuzz workspace (fuzz/) can build the very parser the node runs (target
//! `node_toml`). `gateway`, `lns`, `delivery`, `peering` and `api` re-export their
//! settings under their old paths (`entente_lns::LnsConfig`), and the node its
//! `config` module.

pub mod api;
pub mod delivery;
pub mod gateway;
pub mod lns;
pub mod node;
pub mod peering;

pub use node::{ApiSection, ConfigError, LogFilterError, LogSection, NodeConfig, NodeSection};
