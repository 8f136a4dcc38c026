//! The seam between the network server and the federation: the visited side hands over
//! frames whose device lives elsewhere; the home side sends downlinks through gateways
//! that belong to a peer. The LNS knows nothing of libp2p; `entente-peering` implements it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use entente_gateway::json::TxPk;
use entente_gateway::{DownlinkError, RxInfo, TxOutcome};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui};

pub type TxFuture = Pin<Box<dyn Future<Output = Result<TxOutcome, DownlinkError>> + Send>>;

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

pub trait Roaming: Send + Sync {
    /// Data uplinks are routed by DevAddr (longest-prefix match over the roster's blocks).
    fn route_data(&self, dev_addr: DevAddr) -> Route;
    /// Joins by JoinEUI range or a DevEUI declared under an agreement.
    fn route_join(&self, join_eui: JoinEui, dev_eui: DevEui) -> Route;
    /// Visited side: takes a deduplicated frame with every local gateway's metadata.
    fn forward(&self, phy_payload: Vec<u8>, rx: Vec<RxInfo>);
    /// Home side: is this gateway a peer's, reached through the federation?
    fn is_remote_gateway(&self, gateway: &GatewayEui) -> bool;
    /// Home side: sends a downlink through a peer's gateway; the outcome is that gateway's
    /// own TX_ACK as reported by the peer.
    fn send_downlink(&self, gateway: GatewayEui, txpk: TxPk, timeout: Duration) -> TxFuture;
}
