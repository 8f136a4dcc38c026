//! JSON objects of the Semtech protocol, as the packet forwarder writes them.
//! Fields a forwarder may omit are optional; unknown fields are ignored.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

/// Body of a PUSH_DATA datagram. Its strings borrow from the datagram where they hold no
/// escape (always, from a real forwarder): parsing one allocates only the list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PushData<'a> {
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    pub rxpk: Vec<RxPk<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

/// `datr`: a string (`"SF7BW125"`) for LoRa, a number of bits per second for FSK.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Datr<'a> {
    Lora(Cow<'a, str>),
    Fsk(u32),
}

impl<'de: 'a, 'a> Deserialize<'de> for Datr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Datr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a LoRa data rate string or an FSK bit rate")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Datr::Lora(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Datr::Lora(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(Datr::Fsk)
                    .map_err(|_| E::custom(format!("FSK bit rate {v} out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Datr<'_> {
    pub fn into_owned(self) -> Datr<'static> {
        match self {
            Datr::Lora(s) => Datr::Lora(Cow::Owned(s.into_owned())),
            Datr::Fsk(b) => Datr::Fsk(b),
        }
    }
}

fn owned_datr<'de, D: Deserializer<'de>>(d: D) -> Result<Datr<'static>, D::Error> {
    Datr::deserialize(d).map(Datr::into_owned)
}

/// An optional string that borrows from the input when it can (serde's own `Option<Cow>`
/// always copies).
fn option_cow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Str;
    impl<'de> serde::de::Visitor<'de> for Str {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
    }
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Str).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// One received packet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RxPk<'a> {
    /// UTC time of reception, ISO 8601 compact, when the gateway has GPS or NTP.
    #[serde(
        default,
        borrow,
        deserialize_with = "option_cow",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<Cow<'a, str>>,
    /// GPS time of reception in milliseconds since 6 January 1980.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Internal concentrator counter in microseconds; downlink timing is relative to it.
    pub tmst: u32,
    /// Centre frequency in MHz.
    pub freq: f64,
    #[serde(default)]
    pub chan: u8,
    #[serde(default)]
    pub rfch: u8,
    /// CRC status: 1 OK, -1 failed, 0 no CRC.
    pub stat: i8,
    #[serde(borrow)]
    pub modu: Cow<'a, str>,
    #[serde(borrow)]
    pub datr: Datr<'a>,
    #[serde(
        default,
        borrow,
        deserialize_with = "option_cow",
        skip_serializing_if = "Option::is_none"
    )]
    pub codr: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f32>,
    pub size: u16,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    /// Per-antenna signal of multi-antenna gateways (Kerlink iBTS, v2 forwarders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rsig: Vec<RSig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RSig {
    #[serde(default)]
    pub ant: u8,
    #[serde(default)]
    pub chan: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssic: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f32>,
}

/// Gateway status report, sent every `stat_interval` seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// `"2014-01-12 08:59:28 GMT"`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lati: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alti: Option<f64>,
    /// Packets received, with valid CRC, forwarded.
    #[serde(default)]
    pub rxnb: u32,
    #[serde(default)]
    pub rxok: u32,
    #[serde(default)]
    pub rxfw: u32,
    /// Percentage of upstream datagrams acknowledged.
    #[serde(default)]
    pub ackr: f64,
    /// Downlinks received, emitted.
    #[serde(default)]
    pub dwnb: u32,
    #[serde(default)]
    pub txnb: u32,
}

/// Body of a PULL_RESP datagram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullResp {
    pub txpk: TxPk,
}

/// A packet to transmit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPk {
    /// Send immediately (Class C), ignoring `tmst`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imme: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    pub freq: f64,
    #[serde(default)]
    pub rfch: u8,
    pub powe: i8,
    pub modu: String,
    #[serde(deserialize_with = "owned_datr")]
    pub datr: Datr<'static>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdev: Option<u32>,
    /// Inverted polarity: true for LoRaWAN downlinks.
    #[serde(default)]
    pub ipol: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prea: Option<u16>,
    pub size: u16,
    pub data: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ncrc: bool,
}

/// Body of a TX_ACK datagram (absent or empty means success on old forwarders).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TxAckBody {
    #[serde(default)]
    pub txpk_ack: TxPkAck,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TxPkAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<String>,
}

impl TxPk {
    /// The Semtech form of a protocol-free downlink: the reception context is the
    /// concentrator's `tmst`, the frequency is in MHz, the payload in base64.
    pub fn from_downlink(d: &crate::seam::Downlink) -> TxPk {
        use base64::Engine;
        use entente_region::DataRate;
        let (imme, tmst) = match d.timing {
            crate::seam::Timing::Immediately => (true, None),
            crate::seam::Timing::AfterReception { context, delay } => {
                let delay_us = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
                (false, Some((context.0 as u32).wrapping_add(delay_us)))
            }
        };
        let (modu, datr, codr, fdev) = match d.data_rate {
            DataRate::Lora { .. } => (
                "LORA",
                Datr::Lora(d.data_rate.to_string().into()),
                Some("4/5".into()),
                None,
            ),
            DataRate::Fsk { bitrate } => ("FSK", Datr::Fsk(bitrate), None, Some(bitrate / 2)),
        };
        TxPk {
            imme,
            tmst,
            tmms: None,
            freq: f64::from(d.frequency_hz) / 1e6,
            rfch: 0,
            powe: d.power_dbm,
            modu: modu.into(),
            datr,
            codr,
            fdev,
            ipol: matches!(d.data_rate, DataRate::Lora { .. }),
            prea: None,
            size: d.phy_payload.len() as u16,
            data: base64::engine::general_purpose::STANDARD.encode(&d.phy_payload),
            ncrc: true,
        }
    }
}
