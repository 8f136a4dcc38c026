//! The gateway seam (`seam`: uplinks parsed once, protocol-free downlinks, typed TX
//! outcomes, the federation's `Roaming`) and its first backend, the Semtech UDP
//! packet-forwarder protocol (GWMP v2) server: acks, uplink frames, downlinks with TX_ACK,
//! and the registry of the gateways this node accepts.

mod dutycycle;
mod frame;
pub mod gso;
pub mod json;
mod metrics;
pub mod mmsg;
pub mod protocol;
mod registry;
pub mod seam;
mod server;
mod settings;

pub use dutycycle::DutyCycle;
pub use frame::{CrcStatus, FrameError, RxFrame, RxInfo};
pub use metrics::{DatagramDrop, FrameDrop, GatewayMetrics};
pub use registry::{GatewayRecord, GatewayStatus, GatewayView, NewGateway, Registry, RegistryError};
pub use seam::{
    Arrival, Charge, Downlink, DownlinkError, GatewayBackend, RoamedUplink, Roaming, Route, RxContext,
    Timing, TxAckError, TxFuture, TxOutcome, Uplink, Verdict,
};
pub use server::{GatewayServer, ServerConfig};
