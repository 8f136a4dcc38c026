//! The `entente` node: configuration, keys, the node runtime, and the tools that drive
//! nodes as real processes (the demo and the end-to-end tests).

pub mod agreement;
pub mod bench;
pub mod config;
#[cfg(test)]
mod config_mutations;
pub mod demo;
pub mod device;
pub mod directory;
pub mod gateway;
pub mod init;
pub mod keys;
pub mod ledger;
pub mod master_key;
pub mod process;
pub mod roster;
pub mod run;
pub mod scenario;
pub mod tasks;
