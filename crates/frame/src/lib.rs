//! The LoRaWAN codec at the bottom of Entente: PHYPayload parsing and building, MAC
//! commands, 1.0.x and 1.1 cryptography and key derivation, the uplink parsed once.
//! It depends on nothing of ours but `model`, so the federation, the ledger and the
//! simulator read frames without depending on the network server.

mod block;
pub mod crypto;
pub mod keys;
pub mod mac;
pub mod phy;
pub mod uplink;
mod version;

#[cfg(test)]
mod crypto_tests;

pub use block::DevAddrBlock;
pub use keys::{AesKey, BadKey};
pub use uplink::{DataHeader, UplinkError, UplinkFrame, UplinkKind, uplink_parses};
pub use version::{DeviceClass, MacVersion};
