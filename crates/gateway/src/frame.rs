use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use entente_model::GatewayEui;
use entente_region::DataRate;
use serde::{Deserialize, Serialize};

use crate::json::{Datr, RxPk};
use crate::metrics::FrameDrop;

/// Forwarders differ on base64 padding (PROTOCOL.TXT's own example has none).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// LoRa PHY payloads never exceed 255 bytes.
const MAX_PHY_PAYLOAD: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrcStatus {
    Ok,
}

pub use entente_wire::gateway::RxInfo;

/// A frame received by a gateway, validated and decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxFrame {
    pub phy_payload: Vec<u8>,
    pub rx: RxInfo,
}

/// A frame refused, with the reason counted in the metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct FrameError {
    pub reason: FrameDrop,
    pub detail: String,
}

fn bad(reason: FrameDrop, detail: impl Into<String>) -> FrameError {
    FrameError {
        reason,
        detail: detail.into(),
    }
}

impl RxFrame {
    /// Checks one `rxpk` and turns it into a typed frame.
    pub fn from_rxpk(
        gateway: GatewayEui,
        pk: &RxPk<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<Self, FrameError> {
        match pk.stat {
            1 => {}
            -1 => return Err(bad(FrameDrop::CrcFailed, "stat -1")),
            0 => return Err(bad(FrameDrop::NoCrc, "stat 0")),
            s => return Err(bad(FrameDrop::BadRxpk, format!("stat {s}"))),
        }
        let data_rate = match (pk.modu.as_ref(), &pk.datr) {
            ("LORA", Datr::Lora(s)) => s
                .parse::<DataRate>()
                .map_err(|e| bad(FrameDrop::BadRxpk, e.to_string()))?,
            ("FSK", Datr::Fsk(bitrate)) if *bitrate > 0 => DataRate::Fsk { bitrate: *bitrate },
            (m, d) => return Err(bad(FrameDrop::BadRxpk, format!("modu {m:?} with datr {d:?}"))),
        };
        // EU, US, AS and other ISM bands all sit between 100 MHz and 3 GHz.
        if !(pk.freq.is_finite() && pk.freq > 100.0 && pk.freq < 3000.0) {
            return Err(bad(FrameDrop::BadRxpk, format!("freq {}", pk.freq)));
        }
        let frequency_hz = (pk.freq * 1_000_000.0).round() as u32;
        let (rssi, snr) = signal(pk)?;
        let phy_payload = B64
            .decode(pk.data.as_bytes())
            .map_err(|e| bad(FrameDrop::BadBase64, e.to_string()))?;
        if phy_payload.len() != usize::from(pk.size) || phy_payload.len() > MAX_PHY_PAYLOAD {
            return Err(bad(
                FrameDrop::SizeMismatch,
                format!("size {} but {} bytes of data", pk.size, phy_payload.len()),
            ));
        }
        let time = pk
            .time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
            // A time the store cannot encode (before 1677, after 2262) is no time at all.
            .filter(|t| t.timestamp_nanos_opt().is_some());
        Ok(Self {
            phy_payload,
            rx: RxInfo {
                gateway,
                tmst: pk.tmst,
                time,
                gps_time_ms: pk.tmms,
                received_at,
                frequency_hz,
                channel: pk.chan,
                rf_chain: pk.rfch,
                data_rate,
                coding_rate: pk
                    .codr
                    .as_deref()
                    .map(str::to_owned)
                    .filter(|_| matches!(data_rate, DataRate::Lora { .. })),
                rssi,
                snr,
            },
        })
    }
}

/// Single-antenna forwarders give `rssi`/`lsnr`; multi-antenna ones may give only `rsig`,
/// in which case the best antenna counts.
fn signal(pk: &RxPk<'_>) -> Result<(i32, f32), FrameError> {
    let best_rssi = pk.rsig.iter().filter_map(|s| s.rssic).max();
    let best_snr = pk
        .rsig
        .iter()
        .filter_map(|s| s.lsnr)
        .filter(|s| s.is_finite())
        .fold(None, |acc: Option<f32>, s| Some(acc.map_or(s, |a| a.max(s))));
    let rssi = pk.rssi.or(best_rssi);
    let snr = pk.lsnr.filter(|s| s.is_finite()).or(best_snr);
    let is_fsk = pk.modu == "FSK";
    let (rssi, snr) = match (rssi, snr) {
        (Some(r), Some(s)) => (r, s),
        (Some(r), None) if is_fsk => (r, 0.0),
        _ => return Err(bad(FrameDrop::BadRxpk, "no rssi/lsnr")),
    };
    if !RSSI_DBM.contains(&rssi) || !SNR_DB.contains(&snr) {
        return Err(bad(FrameDrop::BadRxpk, format!("rssi {rssi} dBm, lsnr {snr} dB")));
    }
    Ok((rssi, snr))
}

/// What a radio can report, widely: beyond it the figure is a forwarder's bug or a lie,
/// and ADR and best-gateway choice would act on it.
const RSSI_DBM: std::ops::RangeInclusive<i32> = -250..=50;
const SNR_DB: std::ops::RangeInclusive<f32> = -50.0..=50.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{PushData, RSig};

    fn pk() -> RxPk<'static> {
        serde_json::from_str(
            r#"{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,
               "freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6",
               "rssi":-35,"lsnr":5.1,"size":32,
               "data":"+DS4CGaDCdG+48eJNM3Vai+zDpsR71Pn9CPA9uCON84"}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_the_protocol_example() {
        let now = Utc::now();
        let f = RxFrame::from_rxpk(GatewayEui::from_u64(1), &pk(), now).unwrap();
        assert_eq!(f.phy_payload.len(), 32);
        assert_eq!(f.rx.tmst, 3_512_348_611);
        assert_eq!(f.rx.frequency_hz, 866_349_812);
        assert_eq!(f.rx.data_rate.to_string(), "SF7BW125");
        assert_eq!(f.rx.rssi, -35);
        assert_eq!(f.rx.coding_rate.as_deref(), Some("4/6"));
        assert_eq!(
            f.rx.time.unwrap().to_rfc3339(),
            "2013-03-31T16:21:17.528002+00:00"
        );
    }

    /// Strings with escapes cannot borrow from the datagram (some encoders write `\/`);
    /// they are copied, and the frame reads the same.
    #[test]
    fn escaped_strings_parse_like_plain_ones() {
        let escaped: PushData<'_> = serde_json::from_str(
            r#"{"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,
               "rfch":0,"freq":866.349812,"stat":1,"modu":"LO\u0052A","datr":"SF7\u0042W125",
               "codr":"4\/6","rssi":-35,"lsnr":5.1,"size":32,
               "data":"+DS4CGaDCdG+48eJNM3Vai+zDpsR71Pn9CPA9uCON84"}]}"#,
        )
        .unwrap();
        let [esc] = escaped.rxpk.as_slice() else {
            panic!("one rxpk")
        };
        assert!(matches!(esc.modu, std::borrow::Cow::Owned(_)));
        let now = Utc::now();
        let a = RxFrame::from_rxpk(GatewayEui::from_u64(1), esc, now).unwrap();
        let b = RxFrame::from_rxpk(GatewayEui::from_u64(1), &pk(), now).unwrap();
        assert_eq!(a.phy_payload, b.phy_payload);
        assert_eq!(a.rx, b.rx);
        assert!(
            matches!(pk().data, std::borrow::Cow::Borrowed(_)),
            "plain strings borrow"
        );
    }

    #[test]
    fn a_gateway_time_the_store_cannot_encode_is_dropped_not_the_frame() {
        let far = RxPk {
            time: Some("9999-12-31T23:59:59Z".into()),
            ..pk()
        };
        let f = RxFrame::from_rxpk(GatewayEui::from_u64(1), &far, Utc::now()).unwrap();
        assert_eq!(f.rx.time, None);
    }

    #[test]
    fn reasons() {
        let g = GatewayEui::from_u64(1);
        let now = Utc::now();
        let reason = |p: RxPk<'_>| RxFrame::from_rxpk(g, &p, now).unwrap_err().reason;
        assert_eq!(reason(RxPk { stat: -1, ..pk() }), FrameDrop::CrcFailed);
        assert_eq!(reason(RxPk { stat: 0, ..pk() }), FrameDrop::NoCrc);
        assert_eq!(
            reason(RxPk {
                data: "!!!".into(),
                ..pk()
            }),
            FrameDrop::BadBase64
        );
        assert_eq!(reason(RxPk { size: 31, ..pk() }), FrameDrop::SizeMismatch);
        assert_eq!(
            reason(RxPk {
                datr: Datr::Lora("SF99".into()),
                ..pk()
            }),
            FrameDrop::BadRxpk
        );
        assert_eq!(
            reason(RxPk {
                datr: Datr::Fsk(50000),
                ..pk()
            }),
            FrameDrop::BadRxpk
        );
        assert_eq!(
            reason(RxPk {
                freq: f64::NAN,
                ..pk()
            }),
            FrameDrop::BadRxpk
        );
        assert_eq!(reason(RxPk { rssi: None, ..pk() }), FrameDrop::BadRxpk);
        for (rssi, lsnr) in [(-35, 1e30), (-35, -51.0), (i32::MAX, 5.0), (-251, 5.0)] {
            let pk = RxPk {
                rssi: Some(rssi),
                lsnr: Some(lsnr),
                ..pk()
            };
            assert_eq!(reason(pk), FrameDrop::BadRxpk, "rssi {rssi}, lsnr {lsnr}");
        }
    }

    #[test]
    fn multi_antenna_takes_best_antenna() {
        let p = RxPk {
            rssi: None,
            lsnr: None,
            rsig: vec![
                RSig {
                    ant: 0,
                    chan: 2,
                    rssic: Some(-90),
                    lsnr: Some(-3.0),
                },
                RSig {
                    ant: 1,
                    chan: 2,
                    rssic: Some(-70),
                    lsnr: Some(4.5),
                },
            ],
            ..pk()
        };
        let f = RxFrame::from_rxpk(GatewayEui::from_u64(1), &p, Utc::now()).unwrap();
        assert_eq!((f.rx.rssi, f.rx.snr), (-70, 4.5));
    }
}
