//! Device sessions: keys, frame counters, radio settings agreed with the device.

use chrono::{DateTime, Utc};
use entente_model::{DevAddr, DevEui, GatewayEui};
use serde::{Deserialize, Serialize};

use crate::device::{DeviceClass, MacVersion};
use crate::keys::AesKey;

/// TS001 §4.3.1.5: frames further ahead than this are refused (1.0.x MAX_FCNT_GAP).
pub const MAX_FCNT_GAP: u32 = 16_384;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub dev_eui: DevEui,
    pub dev_addr: DevAddr,
    pub mac_version: MacVersion,
    pub class: DeviceClass,
    /// NwkSKey for 1.0.x; FNwkSIntKey for 1.1.
    pub f_nwk_s_int_key: AesKey,
    pub s_nwk_s_int_key: AesKey,
    pub nwk_s_enc_key: AesKey,
    pub app_s_key: Option<AesKey>,
    /// Last accepted uplink FCnt; None before the first uplink of the session.
    pub fcnt_up: Option<u32>,
    /// Next FCnt for downlinks (1.0.x uses only `n_fcnt_down`).
    pub n_fcnt_down: u32,
    pub a_fcnt_down: u32,
    pub rx_delay: u8,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    /// FCnt of a confirmed downlink awaiting the device's ACK.
    pub pending_confirmed_down: Option<u32>,
    #[serde(with = "entente_model::timestamp::option")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Gateway that heard the device best last time (Class C downlinks go through it).
    pub last_gateway: Option<GatewayEui>,
    pub battery: Option<u8>,
    pub margin: Option<i8>,
    /// Highest SNRs of recent uplinks, for ADR.
    pub snr_history: Vec<f32>,
    pub data_rate: u8,
    pub tx_power_index: u8,
    /// MAC commands to send with the next downlink (already encoded).
    pub pending_mac: Vec<u8>,
    #[serde(with = "entente_model::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "entente_model::timestamp::option")]
    pub last_dev_status_req: Option<DateTime<Utc>>,
    /// Whether the EU868 extra channels are known to the device (CFList or NewChannelReq).
    pub channels_configured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FCntCheck {
    /// A new frame with this full 32-bit counter.
    Fresh(u32),
    /// The last accepted frame again (a device retransmitting a confirmed uplink).
    Retransmission(u32),
    /// Older than the last accepted frame.
    Replay,
    /// Further ahead than MAX_FCNT_GAP.
    TooFarAhead,
}

impl Session {
    /// Full 32-bit counter candidate for a 16-bit FCnt, the way TS001 §4.3.1.5 rolls over.
    pub fn full_fcnt(&self, fcnt16: u16) -> u32 {
        let Some(last) = self.fcnt_up else {
            return fcnt16 as u32;
        };
        let mut full = (last & 0xffff_0000) | fcnt16 as u32;
        if full < last {
            full = full.wrapping_add(0x1_0000);
        }
        full
    }

    pub fn check_fcnt(&self, full: u32, fcnt16: u16) -> FCntCheck {
        let Some(last) = self.fcnt_up else {
            return FCntCheck::Fresh(full);
        };
        if full == last {
            return FCntCheck::Retransmission(last);
        }
        if full < last {
            return FCntCheck::Replay;
        }
        if full.wrapping_sub(last) > MAX_FCNT_GAP {
            // A low 16-bit value read as "wrapped around" is far more likely an old frame.
            return if (fcnt16 as u32) < (last & 0xffff) {
                FCntCheck::Replay
            } else {
                FCntCheck::TooFarAhead
            };
        }
        FCntCheck::Fresh(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last: Option<u32>) -> Session {
        Session {
            dev_eui: DevEui([1; 8]),
            dev_addr: DevAddr(1),
            mac_version: MacVersion::V1_0_3,
            class: DeviceClass::A,
            f_nwk_s_int_key: AesKey::default(),
            s_nwk_s_int_key: AesKey::default(),
            nwk_s_enc_key: AesKey::default(),
            app_s_key: None,
            fcnt_up: last,
            n_fcnt_down: 0,
            a_fcnt_down: 0,
            rx_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            pending_confirmed_down: None,
            last_seen: None,
            last_gateway: None,
            battery: None,
            margin: None,
            snr_history: vec![],
            data_rate: 0,
            tx_power_index: 0,
            pending_mac: vec![],
            created_at: DateTime::UNIX_EPOCH,
            last_dev_status_req: None,
            channels_configured: false,
        }
    }

    fn check(last: Option<u32>, fcnt16: u16) -> FCntCheck {
        let s = session(last);
        s.check_fcnt(s.full_fcnt(fcnt16), fcnt16)
    }

    #[test]
    fn counters_roll_over_16_bits() {
        assert_eq!(check(Some(65_535), 0), FCntCheck::Fresh(65_536));
        assert_eq!(check(Some(65_534), 1), FCntCheck::Fresh(65_537));
        assert_eq!(check(Some(0x0002_fff0), 0x0005), FCntCheck::Fresh(0x0003_0005));
    }

    #[test]
    fn replays_and_retransmissions_are_told_apart() {
        assert_eq!(check(Some(10), 10), FCntCheck::Retransmission(10));
        assert_eq!(
            check(Some(70_000), (70_000u32 & 0xffff) as u16),
            FCntCheck::Retransmission(70_000)
        );
        assert_eq!(check(Some(10), 9), FCntCheck::Replay);
        assert_eq!(check(Some(65_540), 3), FCntCheck::Replay);
        assert_eq!(check(Some(10), 11), FCntCheck::Fresh(11));
        assert_eq!(
            check(Some(100), 100 + MAX_FCNT_GAP as u16 + 1),
            FCntCheck::TooFarAhead
        );
        assert_eq!(check(None, 0), FCntCheck::Fresh(0));
    }
}
