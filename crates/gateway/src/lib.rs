//! The gateway seam (`seam`: uplinks parsed once, protocol-free downlinks, typed TX
//! outcomes, the federation's `Roaming`) and its first backend, the Semtech UDP
//! packet-forwarder protocol (GWMP v2) server: acks, uplink frames, downlinks with TX_ACK,
//! and the registry of the gateways this node accepts. The protocol's pure part, the
//! datagram codec and the JSON objects, lives in `entente-gwmp` (no RocksDB, so the fuzz
//! targets build it alone) and is re-exported here as `protocol` and `json`.

mod dutycycle;
mod frame;
pub mod gso;
mod gwmp;
pub mod journal;
pub use entente_gwmp::json;
mod metrics;
pub mod mmsg;
pub use entente_gwmp::protocol;
mod registry;
pub mod seam;
mod server;
mod settings;
mod source;

pub use dutycycle::DutyCycle;
pub use frame::{CrcStatus, FrameError, RxFrame, RxInfo};
pub use journal::Journal;
pub use metrics::{DatagramDrop, FrameDrop, GatewayMetrics};
pub use registry::{GatewayRecord, GatewayStatus, GatewayView, NewGateway, Registry, RegistryError};
pub use seam::{
    Arrival, Charge, Downlink, DownlinkError, GatewayBackend, RoamedUplink, Roaming, Route, RxContext,
    Timing, TxAckError, TxFuture, TxOutcome, Uplink, Verdict,
};
pub use server::{GatewayServer, ServerConfig};
pub use source::{AllowedSource, PinnedBy, SourcePin};
