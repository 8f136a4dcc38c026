//! The seam between the network server and whatever carries its frames: gateway
//! backends (Semtech UDP today, Basics Station next) and federation peers. Nothing here
//! speaks a gateway protocol: an uplink is a parsed frame with its reception metadata, a
//! downlink is a PHYPayload with a frequency in Hz, a data rate, a power and a timing,
//! and a transmission ends in a typed [`TxOutcome`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use entente_frame::UplinkFrame;
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui};

use crate::dutycycle::DutyCycle;
use crate::frame::RxInfo;

/// One gateway's reception of an uplink, parsed once where it entered the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub frame: UplinkFrame,
    pub rx: RxInfo,
    /// The row of the journal of acknowledged frames that holds it until the network
    /// server has made it safe; `None` when it was not journaled.
    pub journal: Option<crate::journal::Mark>,
}

/// A frame of one of our devices that a federation peer forwarded to us, its home: every
/// reception the peer shared, and where the network server says what it made of it.
pub struct RoamedUplink {
    pub frame: UplinkFrame,
    pub rx: Vec<RxInfo>,
    /// Buffered while we were unreachable: no downlink can answer it any more.
    pub arrival: Arrival,
    /// Spends the frame's share of the agreement's quotas once the network server has
    /// verified it and knows the device; `Err` is the refusal's label.
    pub charge: Charge,
    pub verdict: tokio::sync::oneshot::Sender<Verdict>,
}

pub type Charge = Box<dyn FnOnce(DevEui) -> Result<(), &'static str> + Send>;

/// Whether a frame can still be answered in its receive windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Live,
    Late,
}

/// What the home network server made of a roamed frame: only a verified frame (MIC and
/// frame counter checked, and written) is counted and spends quotas, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// The network server's rejection label (`mic_failed`, `replay`, ...).
    Rejected(&'static str),
}

pub use entente_wire::gateway::{Downlink, RxContext, Timing, TxAckError};

/// What the gateway said about a downlink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxOutcome {
    /// Scheduled for transmission; a warning (e.g. power lowered) may come with it.
    Ok {
        warning: Option<String>,
    },
    Error(TxAckError),
    /// Protocol v1 gateways never send TX_ACK.
    NotAcknowledged,
}

#[derive(Debug, thiserror::Error)]
pub enum DownlinkError {
    #[error("gateway {0} is not registered")]
    UnknownGateway(GatewayEui),
    #[error("gateway {0} has not sent PULL_DATA yet, so it cannot be reached")]
    NotConnected(GatewayEui),
    #[error("gateway {0} sent no TX_ACK within {1:?}")]
    Timeout(GatewayEui, Duration),
    #[error("cannot encode downlink: {0}")]
    Encode(String),
    #[error("cannot send to gateway: {0}")]
    Io(#[from] io::Error),
    /// The gateway is a federation peer's and the peer could not be asked.
    #[error("peer gateway {0}: {1}")]
    Peer(GatewayEui, String),
}

pub type TxFuture<'a> = Pin<Box<dyn Future<Output = Result<TxOutcome, DownlinkError>> + Send + 'a>>;

/// A gateway backend: sends a downlink through one of its gateways and reports that
/// gateway's own answer.
pub trait GatewayBackend: Send + Sync {
    fn transmit(&self, gateway: GatewayEui, downlink: Downlink, timeout: Duration) -> TxFuture<'_>;
    /// The airtime each gateway's sub-bands spent this hour: every downlink through these
    /// gateways books it, the network server's and those relayed for peers alike.
    fn duty_cycle(&self) -> &DutyCycle;
}

/// Where a frame is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ours: processed here.
    Home,
    /// Another member's: forwarded to it.
    Forward,
    /// Nobody's we know: processed here, where it is rejected and counted.
    Unknown,
}

/// The federation as the network server sees it: the visited side hands over frames whose
/// device lives elsewhere; the home side sends downlinks through gateways that belong to
/// a peer. Implemented by `entente-peering`; the network server knows nothing of libp2p.
pub trait Roaming: Send + Sync {
    /// Data uplinks are routed by DevAddr (longest-prefix match over the roster's blocks).
    fn route_data(&self, dev_addr: DevAddr) -> Route;
    /// Joins by JoinEUI range or a DevEUI declared under an agreement.
    fn route_join(&self, join_eui: JoinEui, dev_eui: DevEui) -> Route;
    /// Visited side: the first copy of a frame only forwarded from here. The frame is
    /// kept in the store from now on, so a crash while its dedup window is open loses
    /// nothing; the answer is its place in the order frames were heard, for `forward`.
    fn heard(&self, _frame: &UplinkFrame, _rx: &[RxInfo]) -> Option<u64> {
        None
    }
    /// Visited side: takes a deduplicated frame with every local gateway's metadata, and
    /// the place `heard` gave it.
    fn forward(&self, frame: UplinkFrame, rx: Vec<RxInfo>, kept: Option<u64>);
    /// Home side: is this gateway a peer's, reached through the federation?
    fn is_remote_gateway(&self, gateway: &GatewayEui) -> bool;
    /// Home side: sends a downlink through a peer's gateway; the outcome is that gateway's
    /// own answer as reported by the peer.
    fn send_downlink(&self, gateway: GatewayEui, downlink: Downlink, timeout: Duration) -> TxFuture<'_>;
}
