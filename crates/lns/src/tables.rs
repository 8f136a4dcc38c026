//! The LNS's RocksDB tables.

use chrono::{DateTime, Utc};
use entente_gateway::RxInfo;
use entente_model::{DevAddr, DevEui};
use entente_store::Table;
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::session::Session;

pub struct Devices;
impl Table for Devices {
    const NAME: &'static str = "devices";
    const CACHED: bool = true;
    const SEALED: bool = true;
    type Key = DevEui;
    type Value = Device;
}

pub struct Sessions;
impl Table for Sessions {
    const NAME: &'static str = "sessions";
    const CACHED: bool = true;
    const SEALED: bool = true;
    type Key = DevEui;
    type Value = Session;
}

/// DevAddr -> devices using it (several may share one; the MIC tells them apart).
pub struct DevAddrIndex;
impl Table for DevAddrIndex {
    const NAME: &'static str = "dev_addr_index";
    type Key = (DevAddr, DevEui);
    type Value = ();
}

/// Join-server state per device: last JoinNonce and DevNonce.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinCounters {
    pub join_nonce: u32,
    pub last_dev_nonce: Option<u16>,
    pub joins: u64,
}

pub struct JoinState;
impl Table for JoinState {
    const NAME: &'static str = "join_state";
    type Key = DevEui;
    type Value = JoinCounters;
}

/// DevNonces used by 1.0.0–1.0.3 devices (random nonces, so a set is the only guard).
pub struct UsedDevNonces;
impl Table for UsedDevNonces {
    const NAME: &'static str = "used_dev_nonces";
    type Key = (DevEui, u16);
    type Value = ();
}

/// An accepted uplink, kept for delivery to applications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkRecord {
    pub seq: u64,
    pub dev_eui: DevEui,
    pub dev_addr: DevAddr,
    pub fcnt: u32,
    pub fport: Option<u8>,
    /// Clear text, or the FRMPayload as sent when the member keeps its AppSKey.
    pub payload: Vec<u8>,
    pub encrypted: bool,
    pub confirmed: bool,
    pub data_rate: u8,
    pub frequency_hz: u32,
    pub rx: Vec<RxInfo>,
    #[serde(with = "entente_model::timestamp")]
    pub received_at: DateTime<Utc>,
}

pub struct Uplinks;
impl Table for Uplinks {
    const NAME: &'static str = "uplinks";
    type Key = (DevEui, u64);
    type Value = UplinkRecord;
}

/// An application downlink waiting for its opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    pub id: u64,
    pub fport: u8,
    pub payload: Vec<u8>,
    pub confirmed: bool,
    /// FCnt it was sent with; a confirmed item stays until the device acknowledges it.
    pub sent_fcnt: Option<u32>,
    pub attempts: u32,
    #[serde(with = "entente_model::timestamp")]
    pub created_at: DateTime<Utc>,
}

pub struct DownlinkQueue;
impl Table for DownlinkQueue {
    const NAME: &'static str = "downlink_queue";
    type Key = (DevEui, u64);
    type Value = QueueItem;
}

/// The tables whose rows hold keys, sealed under the node's master key
/// (`entente keys rotate` re-seals them).
pub const SEALED: &[&str] = &[Devices::NAME, Sessions::NAME];

pub const ALL: &[&str] = &[
    Devices::NAME,
    Sessions::NAME,
    DevAddrIndex::NAME,
    JoinState::NAME,
    UsedDevNonces::NAME,
    Uplinks::NAME,
    DownlinkQueue::NAME,
    crate::seq::SeqCeiling::NAME,
];
