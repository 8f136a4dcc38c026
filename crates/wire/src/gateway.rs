//! The gateway seam's types that travel between peers: how a gateway received a frame
//! (`RxInfo`), a transmission in no gateway's protocol (`Downlink`, with its `Timing`),
//! and the error a gateway reports in TX_ACK. `entente-gateway` re-exports them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entente_gwmp::json::{Datr, Transmission};
use entente_model::GatewayEui;
use entente_region::DataRate;
use serde::{Deserialize, Serialize};

/// How one gateway received a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxInfo {
    pub gateway: GatewayEui,
    /// Concentrator counter (µs) at reception; RX1/RX2 are scheduled relative to it.
    pub tmst: u32,
    /// Gateway's own UTC time of reception, when it has one.
    #[serde(with = "entente_model::timestamp::option")]
    pub time: Option<DateTime<Utc>>,
    /// GPS time (ms since 1980-01-06) of reception, when the gateway has GPS.
    pub gps_time_ms: Option<u64>,
    /// When this node received the datagram.
    #[serde(with = "entente_model::timestamp")]
    pub received_at: DateTime<Utc>,
    pub frequency_hz: u32,
    pub channel: u8,
    pub rf_chain: u8,
    pub data_rate: DataRate,
    /// `4/5` ... `4/8`; `None` for FSK.
    pub coding_rate: Option<String>,
    pub rssi: i32,
    pub snr: f32,
}

impl RxInfo {
    /// The backend's reference to this reception, handed back to time a downlink.
    pub fn context(&self) -> RxContext {
        RxContext(u64::from(self.tmst))
    }
}

/// A backend's reference to one reception, opaque to the network server, which only
/// hands it back to time a downlink after it. Semtech UDP: the concentrator's `tmst`
/// (µs); Basics Station: its `xtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RxContext(pub u64);

/// When a gateway transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timing {
    /// As soon as possible (Class C).
    Immediately,
    /// `delay` after the reception `context` names (Class A RX1 and RX2).
    AfterReception { context: RxContext, delay: Duration },
}

/// A transmission the network server asks of a gateway, in no gateway's protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Downlink {
    #[serde(with = "bytes")]
    pub phy_payload: Vec<u8>,
    pub frequency_hz: u32,
    pub data_rate: DataRate,
    pub power_dbm: i8,
    pub timing: Timing,
}

/// Error reported by a gateway in TX_ACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxAckError {
    TooLate,
    TooEarly,
    CollisionPacket,
    CollisionBeacon,
    TxFreq,
    TxPower,
    GpsUnlocked,
    Other(String),
}

impl TxAckError {
    /// A metric label for the error.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLate => "too_late",
            Self::TooEarly => "too_early",
            Self::CollisionPacket => "collision_packet",
            Self::CollisionBeacon => "collision_beacon",
            Self::TxFreq => "tx_freq",
            Self::TxPower => "tx_power",
            Self::GpsUnlocked => "gps_unlocked",
            Self::Other(_) => "other",
        }
    }

    /// The inverse of [`TxAckError::as_str`], for errors reported by a federation peer.
    pub fn from_label(s: &str) -> Self {
        match s {
            "too_late" => Self::TooLate,
            "too_early" => Self::TooEarly,
            "collision_packet" => Self::CollisionPacket,
            "collision_beacon" => Self::CollisionBeacon,
            "tx_freq" => Self::TxFreq,
            "tx_power" => Self::TxPower,
            "gps_unlocked" => Self::GpsUnlocked,
            other => Self::Other(other.chars().take(64).collect()),
        }
    }

    /// The error as a gateway writes it in its TX_ACK (`TOO_LATE`, ...).
    pub fn parse(s: &str) -> Self {
        match s {
            "TOO_LATE" => Self::TooLate,
            "TOO_EARLY" => Self::TooEarly,
            "COLLISION_PACKET" => Self::CollisionPacket,
            "COLLISION_BEACON" => Self::CollisionBeacon,
            "TX_FREQ" => Self::TxFreq,
            "TX_POWER" => Self::TxPower,
            "GPS_UNLOCKED" => Self::GpsUnlocked,
            other => Self::Other(other.chars().take(64).collect()),
        }
    }
}

/// A downlink in the Semtech protocol's terms: the reception context is the
/// concentrator's `tmst`, the data rate its `datr` (`TxPk::from_downlink` builds the
/// `txpk` from it).
impl<'a> From<&'a Downlink> for Transmission<'a> {
    fn from(d: &'a Downlink) -> Self {
        let tmst = match d.timing {
            Timing::Immediately => None,
            Timing::AfterReception { context, delay } => {
                let delay_us = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
                // `tmst` is a 32-bit µs counter that wraps (every 71 minutes).
                Some((context.0 as u32).wrapping_add(delay_us))
            }
        };
        let datr = match d.data_rate {
            DataRate::Lora { .. } => Datr::Lora(d.data_rate.to_string().into()),
            DataRate::Fsk { bitrate } => Datr::Fsk(bitrate),
        };
        Transmission {
            tmst,
            frequency_hz: d.frequency_hz,
            power_dbm: d.power_dbm,
            datr,
            phy_payload: &d.phy_payload,
        }
    }
}

/// PHYPayloads as the format's byte strings (CBOR bytes, not arrays of numbers).
mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?.into_vec();
        if b.len() > 255 {
            return Err(serde::de::Error::custom("a PHYPayload is at most 255 bytes"));
        }
        Ok(b)
    }
}
