//! `/entente/roaming/3`: request-response messages between a visited and a home node.
//! CBOR, size-capped by the codec; every field is untrusted and checked on arrival.
//! `entente-peering` re-exports them as `protocol`.

use crate::gateway::{Downlink, RxInfo, TxAckError};
use entente_frame::UplinkFrame;
use entente_model::GatewayEui;
use serde::{Deserialize, Serialize};

pub const ROAMING_PROTOCOL: &str = "/entente/roaming/3";
/// A PHYPayload is at most 255 bytes; 16 gateways' metadata fit many times in this.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
/// Frames per `Uplinks` request: one stream carries what queued up meanwhile, so a burst
/// does not open thousands of streams (yamux holds 256 unacknowledged ones).
pub const MAX_BATCH: usize = 64;
/// Verdicts per `Verdicts` request.
pub const MAX_VERDICTS: usize = 1024;
/// More receptions than this in one forward are refused.
pub const MAX_RX_PER_FRAME: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Visited -> home: deduplicated frames of the home's devices, oldest first.
    Uplinks(Vec<UplinkForward>),
    /// Home -> visited: what its network server found of frames it took.
    Verdicts(Vec<FrameVerdict>),
    /// Home -> visited: send this through the gateway the token names.
    Downlink(DownlinkRequest),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// One receipt per frame, in the request's order.
    Uplinks(Vec<Receipt>),
    /// The verdicts were read.
    Verdicts,
    Downlink(TxResult),
    /// The request could not be decoded or is not allowed here.
    Refused {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkForward {
    /// The visited node's number for this frame, which the home's verdict names.
    pub id: u64,
    /// Parsed (and so checked) once by the receiver as it decodes the request.
    pub frame: UplinkFrame,
    pub rx: Vec<RoamedRx>,
    /// Buffered while the home node was unreachable: too late for any downlink.
    pub late: bool,
}

/// One gateway's reception, with the token the home node must show to use that gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoamedRx {
    pub info: RxInfo,
    #[serde(with = "serde_bytes")]
    pub token: Vec<u8>,
}

/// The home node's first answer, at once: it took the frame to its network server (its
/// verdict follows), or rejected it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Receipt {
    Taken,
    Rejected { reason: String },
}

/// The home node's second answer, once its network server has checked the frame's MIC
/// and counter: only a verified frame is counted, on either side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameVerdict {
    /// The [`UplinkForward::id`] of the frame.
    pub id: u64,
    pub answer: UplinkAnswer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UplinkAnswer {
    Verified,
    Rejected { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownlinkRequest {
    pub gateway: GatewayEui,
    #[serde(with = "serde_bytes")]
    pub token: Vec<u8>,
    pub downlink: Downlink,
}

/// What the visited gateway said, never synthesised: `Ok` only after its TX_ACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxResult {
    Ok {
        warning: Option<String>,
    },
    /// The gateway's TX_ACK error (TOO_LATE, COLLISION_PACKET, ...).
    GatewayError {
        error: TxAckError,
    },
    /// A protocol v1 gateway, which sends no TX_ACK.
    NotAcknowledged,
    /// The RX window could no longer be met when the request arrived.
    TooLate,
    /// The token was not issued to this peer, or not for this gateway, or is expired.
    BadToken,
    /// No agreement in force lets this downlink through (reason as the policy labels it).
    Refused {
        reason: String,
    },
    /// The gateway did not answer in time or is unreachable.
    Failed {
        reason: String,
    },
}
