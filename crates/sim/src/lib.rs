//! Simulators that speak to an Entente node over the real wire protocols: a gateway
//! emulator for the Semtech UDP packet forwarder, and end devices with real LoRaWAN crypto.

mod device;
mod gateway;

pub use device::{DeviceError, DeviceSession, Received, SimDevice};
pub use gateway::{GatewayEmulator, ReceivedDownlink, SimError, rxpk};
