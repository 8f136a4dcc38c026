//! Simulators that speak to an Entente node over the real wire protocols. For now: a
//! gateway emulator for the Semtech UDP packet forwarder.

mod gateway;

pub use gateway::{GatewayEmulator, ReceivedDownlink, SimError, rxpk};
