//! Devices as the conventions describe them (`device`: profile, keys, lifecycle, every
//! field of the import record) and the import from their CSV template (`import`). Pure,
//! so the fuzz targets build it without the network server's store.

pub mod device;
pub mod import;

pub use device::{
    AbpKeys, Device, DeviceClass, DeviceSummary, GeolocationMode, Lifecycle, MacVersion, Profile, UseCase,
};
