//! LoRaWAN network server for one Entente node: devices and profiles, the join server,
//! the uplink pipeline (dedup, MIC, frame counters, MAC commands) and Class A/C downlinks.

pub mod crypto;
pub mod device;
pub mod downlink;
mod dutycycle;
pub mod import;
pub mod join;
pub mod keys;
pub mod mac;
pub mod metrics;
pub mod phy;
pub mod roaming;
pub mod server;
pub mod session;
pub mod tables;
mod uplink;

#[cfg(test)]
mod crypto_tests;

pub use device::{
    AbpKeys, Device, DeviceClass, DeviceSummary, GeolocationMode, Lifecycle, MacVersion, Profile, UseCase,
};
pub use keys::AesKey;
pub use roaming::{Roaming, Route, TxFuture};
pub use server::{DevAddrBlock, LnsConfig, LnsError, NetworkServer, UplinkHook};
pub use tables::{QueueItem, UplinkRecord};
