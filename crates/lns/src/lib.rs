//! LoRaWAN network server for one Entente node: devices and profiles, the join server,
//! the uplink pipeline (dedup, MIC, frame counters, MAC commands) and Class A/C downlinks.

pub use entente_devices::device;
pub mod downlink;
pub use entente_devices::import;
pub mod join;
mod maccommand;
pub mod metrics;
mod retention;
mod seq;
pub mod server;
pub mod session;
mod session_index;
mod settings;
pub mod tables;
mod uplink;

#[cfg(test)]
mod air_tests;
#[cfg(test)]
mod testkit;

pub use device::{
    AbpKeys, Device, DeviceClass, DeviceSummary, GeolocationMode, Lifecycle, MacVersion, Profile, UseCase,
};
pub use entente_frame::{AesKey, DevAddrBlock, crypto, keys, mac, phy};
pub use entente_gateway::{Roaming, Route, TxFuture};
pub use server::{LnsConfig, LnsError, NetworkServer, UplinkHook};
pub use tables::{QueueItem, UplinkRecord};
