//! JSON objects of the Semtech protocol, as the packet forwarder writes them.
//! Fields a forwarder may omit are optional; unknown fields are ignored.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Deserializer, Serialize};

/// Forwarders differ on base64 padding (PROTOCOL.TXT's own example has none): decoding
/// accepts either; encoding pads, like the reference forwarder.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// LoRa PHY payloads never exceed 255 bytes.
pub const MAX_PHY_PAYLOAD: usize = 255;

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

impl<'a> PushData<'a> {
    /// Parses a PUSH_DATA body, borrowing its plain strings from `json`.
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

/// Why an `rxpk`'s `data` is not a PHYPayload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    BadBase64(base64::DecodeError),
    /// Decoded length differs from `size`, or exceeds [`MAX_PHY_PAYLOAD`].
    SizeMismatch {
        size: u16,
        decoded: usize,
    },
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadBase64(e) => write!(f, "data is not base64: {e}"),
            Self::SizeMismatch { size, decoded } => {
                write!(f, "size {size} but {decoded} bytes of data")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

impl RxPk<'_> {
    /// The PHYPayload of `data`: base64 with or without padding, `size` bytes long, at
    /// most [`MAX_PHY_PAYLOAD`].
    pub fn phy_payload(&self) -> Result<Vec<u8>, PayloadError> {
        let bytes = BASE64
            .decode(self.data.as_bytes())
            .map_err(PayloadError::BadBase64)?;
        if bytes.len() != usize::from(self.size) || bytes.len() > MAX_PHY_PAYLOAD {
            return Err(PayloadError::SizeMismatch {
                size: self.size,
                decoded: bytes.len(),
            });
        }
        Ok(bytes)
    }
}

impl PullResp {
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

impl TxAckBody {
    /// Parses a TX_ACK body; forwarders before v2.x send none when all went well.
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(json)
    }
}

/// A transmission in the terms of a `txpk`: what the gateway seam's protocol-free
/// `Downlink` becomes (`entente-gateway` converts one into the other).
#[derive(Debug, Clone, PartialEq)]
pub struct Transmission<'a> {
    /// `None`: at once (Class C); `Some(tmst)`: at that concentrator time (µs).
    pub tmst: Option<u32>,
    pub frequency_hz: u32,
    pub power_dbm: i8,
    /// `Lora("SF7BW125")`, or `Fsk(bit rate)`.
    pub datr: Datr<'a>,
    pub phy_payload: &'a [u8],
}

impl TxPk {
    /// The Semtech form of a downlink: the frequency in MHz, the payload in base64, LoRa
    /// with inverted polarity and coding rate 4/5, FSK with a deviation of half the rate.
    pub fn from_downlink<'a>(d: impl Into<Transmission<'a>>) -> TxPk {
        let t = d.into();
        let (modu, codr, fdev, ipol) = match t.datr {
            Datr::Lora(_) => ("LORA", Some("4/5".to_owned()), None, true),
            Datr::Fsk(bitrate) => ("FSK", None, Some(bitrate / 2), false),
        };
        TxPk {
            imme: t.tmst.is_none(),
            tmst: t.tmst,
            tmms: None,
            freq: f64::from(t.frequency_hz) / 1e6,
            rfch: 0,
            powe: t.power_dbm,
            modu: modu.into(),
            datr: t.datr.into_owned(),
            codr,
            fdev,
            ipol,
            prea: None,
            size: u16::try_from(t.phy_payload.len()).unwrap_or(u16::MAX),
            data: BASE64.encode(t.phy_payload),
            ncrc: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,
        "chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125",
        "codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,
        "data":"+DS4CGaDCdG+48eJNM3Vai+zDpsR71Pn9CPA9uCON84"}],
        "stat":{"time":"2014-01-12 08:59:28 GMT","lati":46.24000,"long":3.25230,"alti":145,
        "rxnb":2,"rxok":2,"rxfw":2,"ackr":100.0,"dwnb":2,"txnb":2}}"#;

    #[test]
    fn parses_the_protocol_example_and_its_payload() {
        let body = PushData::parse(EXAMPLE.as_bytes()).unwrap();
        let [pk] = body.rxpk.as_slice() else {
            panic!("one rxpk")
        };
        assert!(matches!(pk.data, Cow::Borrowed(_)), "plain strings borrow");
        assert_eq!(pk.datr, Datr::Lora("SF7BW125".into()));
        assert_eq!(pk.phy_payload().unwrap().len(), 32);
        let stat = body.stat.unwrap();
        assert_eq!((stat.lati, stat.rxnb, stat.ackr), (Some(46.24), 2, 100.0));
    }

    #[test]
    fn payload_refusals() {
        let body = PushData::parse(EXAMPLE.as_bytes()).unwrap();
        let Some(pk) = body.rxpk.first() else {
            panic!("one rxpk")
        };
        let bad = RxPk {
            data: "!!!".into(),
            ..pk.clone()
        };
        assert!(matches!(bad.phy_payload(), Err(PayloadError::BadBase64(_))));
        let short = RxPk {
            size: 31,
            ..pk.clone()
        };
        assert_eq!(
            short.phy_payload(),
            Err(PayloadError::SizeMismatch {
                size: 31,
                decoded: 32
            })
        );
        let padded = RxPk {
            data: "AQID".into(),
            size: 3,
            ..pk.clone()
        };
        assert_eq!(padded.phy_payload().unwrap(), [1, 2, 3]);
        let unpadded = RxPk {
            data: "AQ".into(),
            size: 1,
            ..pk.clone()
        };
        assert_eq!(unpadded.phy_payload().unwrap(), [1]);
        let long = BASE64.encode([0u8; 256]);
        let too_long = RxPk {
            data: long.into(),
            size: 256,
            ..pk.clone()
        };
        assert!(matches!(
            too_long.phy_payload(),
            Err(PayloadError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn tx_ack_bodies() {
        assert!(TxAckBody::parse(b"").unwrap().txpk_ack.error.is_none());
        assert!(TxAckBody::parse(b" \t\r\n").unwrap().txpk_ack.error.is_none());
        let e = TxAckBody::parse(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#).unwrap();
        assert_eq!(e.txpk_ack.error.as_deref(), Some("TOO_LATE"));
        assert!(TxAckBody::parse(b"{nope").is_err());
    }

    #[test]
    fn txpk_of_a_transmission() {
        let lora = TxPk::from_downlink(Transmission {
            tmst: Some(1_000_000),
            frequency_hz: 868_100_000,
            power_dbm: 14,
            datr: Datr::Lora("SF9BW125".into()),
            phy_payload: &[0x60, 1, 2, 3],
        });
        assert!(!lora.imme && lora.ipol && lora.ncrc);
        assert_eq!((lora.tmst, lora.freq, lora.size), (Some(1_000_000), 868.1, 4));
        assert_eq!((lora.modu.as_str(), lora.codr.as_deref()), ("LORA", Some("4/5")));
        assert_eq!(lora.data, "YAECAw==");
        let fsk = TxPk::from_downlink(Transmission {
            tmst: None,
            frequency_hz: 868_800_000,
            power_dbm: 27,
            datr: Datr::Fsk(50_000),
            phy_payload: &[],
        });
        assert!(fsk.imme && !fsk.ipol);
        assert_eq!(
            (fsk.modu.as_str(), fsk.fdev, fsk.codr.as_deref()),
            ("FSK", Some(25_000), None)
        );
        let json = serde_json::to_vec(&PullResp { txpk: fsk.clone() }).unwrap();
        assert_eq!(PullResp::parse(&json).unwrap().txpk, fsk);
    }
}
