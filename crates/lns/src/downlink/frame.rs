//! Building a data downlink: FCtrl, FOpts or an FPort 0 payload, encryption, MIC, and the
//! session's downlink counters.
//! 1.0.x: one counter, MIC with NwkSKey. 1.1: AFCntDown for FPort > 0, NFCntDown otherwise,
//! FOpts encrypted with NwkSEncKey, MIC with SNwkSIntKey over ConfFCnt.

use crate::crypto::{self, Dir};
use crate::phy::{self, MType};
use crate::session::Session;
use crate::tables::QueueItem;

/// MAC commands longer than this go in an FPort 0 payload instead of FOpts.
pub(crate) const MAX_FOPTS: usize = 15;

/// Whether a downlink acknowledges the uplink it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    No,
    /// The confirmed uplink with this FCnt; its low 16 bits are the 1.1 MIC's ConfFCnt.
    Uplink(u32),
}

/// What one data downlink carries.
pub(crate) struct DataDown<'a> {
    /// The application item, updated with the FCnt and attempt it goes out with.
    pub item: Option<&'a mut QueueItem>,
    pub ack: Ack,
    /// Encoded MAC commands.
    pub mac: &'a [u8],
    /// More application items wait (FPending).
    pub more_pending: bool,
}

/// The frame parts between FHDR and MIC.
struct Body {
    mtype: MType,
    fport: Option<u8>,
    payload: Vec<u8>,
    fopts: Vec<u8>,
}

/// Builds a data downlink and advances the session's counters.
pub(crate) fn build_data_down(s: &mut Session, d: DataDown<'_>) -> Vec<u8> {
    let app_counter = s.mac_version.is_11() && d.item.is_some();
    let fcnt = if app_counter { s.a_fcnt_down } else { s.n_fcnt_down };
    let fctrl = fctrl(d.ack, d.more_pending);
    let conf_fcnt = match d.ack {
        Ack::Uplink(up) => up as u16,
        Ack::No => 0,
    };
    let body = match d.item {
        Some(it) => app_body(s, it, d.mac, fcnt),
        None if d.mac.len() > MAX_FOPTS => mac_payload_body(s, d.mac, fcnt),
        None => mac_fopts_body(s, d.mac, fcnt),
    };
    let mut frame = phy::build_data(
        body.mtype,
        s.dev_addr,
        fctrl,
        fcnt,
        &body.fopts,
        body.fport,
        &body.payload,
    );
    let mic = if s.mac_version.is_11() {
        crypto::downlink_mic(&s.s_nwk_s_int_key, conf_fcnt, s.dev_addr.0, fcnt, &frame)
    } else {
        crypto::downlink_mic(&s.f_nwk_s_int_key, 0, s.dev_addr.0, fcnt, &frame)
    };
    frame.extend_from_slice(&mic);
    if app_counter {
        s.a_fcnt_down = s.a_fcnt_down.wrapping_add(1);
    } else {
        s.n_fcnt_down = s.n_fcnt_down.wrapping_add(1);
    }
    frame
}

fn fctrl(ack: Ack, more_pending: bool) -> u8 {
    let mut fctrl = 0u8;
    if ack != Ack::No {
        fctrl |= 0x20;
    }
    if more_pending {
        fctrl |= 0x10;
    }
    fctrl
}

/// FOpts encrypted with NwkSEncKey in 1.1 (`a_fcnt`: the counter is AFCntDown).
fn fopts(s: &Session, mac: &[u8], a_fcnt: bool, fcnt: u32) -> Vec<u8> {
    let mut fopts = mac.to_vec();
    if s.mac_version.is_11() && !fopts.is_empty() {
        crypto::crypt_fopts_11(
            &s.nwk_s_enc_key,
            Dir::Down,
            a_fcnt,
            s.dev_addr.0,
            fcnt,
            &mut fopts,
        );
    }
    fopts
}

/// An application item, MAC commands in FOpts. Without the AppSKey the member queued an
/// already-encrypted payload.
fn app_body(s: &mut Session, it: &mut QueueItem, mac: &[u8], fcnt: u32) -> Body {
    let mut payload = it.payload.clone();
    if let Some(k) = &s.app_s_key {
        crypto::crypt_frm_payload(k, Dir::Down, s.dev_addr.0, fcnt, &mut payload);
    }
    let fopts = fopts(s, mac, true, fcnt);
    it.sent_fcnt = Some(fcnt);
    it.attempts += 1;
    if it.confirmed {
        s.pending_confirmed_down = Some(fcnt);
    }
    let mtype = if it.confirmed {
        MType::ConfirmedDown
    } else {
        MType::UnconfirmedDown
    };
    Body {
        mtype,
        fport: Some(it.fport),
        payload,
        fopts,
    }
}

fn mac_payload_body(s: &Session, mac: &[u8], fcnt: u32) -> Body {
    let mut payload = mac.to_vec();
    crypto::crypt_frm_payload(&s.nwk_s_enc_key, Dir::Down, s.dev_addr.0, fcnt, &mut payload);
    Body {
        mtype: MType::UnconfirmedDown,
        fport: Some(0),
        payload,
        fopts: Vec::new(),
    }
}

fn mac_fopts_body(s: &Session, mac: &[u8], fcnt: u32) -> Body {
    Body {
        mtype: MType::UnconfirmedDown,
        fport: None,
        payload: Vec::new(),
        fopts: fopts(s, mac, false, fcnt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceClass, MacVersion};
    use crate::testkit::{abp_device, abp_sim, eui, profile};
    use entente_model::DevAddr;

    fn item(confirmed: bool) -> QueueItem {
        QueueItem {
            id: 1,
            fport: 8,
            payload: vec![0x11, 0x22],
            confirmed,
            sent_fcnt: None,
            attempts: 0,
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    /// Version, item (confirmed?), ACK, MAC bytes, FPending.
    type Case<'a> = (MacVersion, Option<bool>, bool, &'a [u8], bool);

    #[test]
    fn the_device_reads_what_was_built() {
        // (version, item (confirmed?), ack, MAC bytes, FPending): what the device must see
        let link_check = [0x02, 0x0c, 0x01];
        let long = [0x06; 16];
        let cases: [Case<'_>; 8] = [
            (MacVersion::V1_0_3, None, true, &[], false),
            (MacVersion::V1_0_3, None, false, &link_check, false),
            (MacVersion::V1_0_3, Some(false), false, &link_check, true),
            (MacVersion::V1_0_3, None, false, &long, false),
            (MacVersion::V1_1, None, true, &link_check, false),
            (MacVersion::V1_1, Some(true), true, &link_check, false),
            (MacVersion::V1_1, Some(false), false, &[], true),
            (MacVersion::V1_1, None, false, &long, false),
        ];
        for (version, confirmed, ack, mac, more_pending) in cases {
            let d = abp_device(eui(1), DevAddr(0x2600_0001), profile(version, DeviceClass::A));
            let mut sim = abp_sim(&d);
            sim.uplink(1, b"up", ack, 5, 0).unwrap();
            let mut s = crate::testkit::session();
            let abp = d.abp.as_ref().unwrap();
            s.mac_version = version;
            s.s_nwk_s_int_key = abp.s_nwk_s_int_key.unwrap_or(abp.nwk_s_key);
            s.nwk_s_enc_key = abp.nwk_s_enc_key.unwrap_or(abp.nwk_s_key);
            let mut it = confirmed.map(item);
            let d = DataDown {
                item: it.as_mut(),
                ack: if ack { Ack::Uplink(0) } else { Ack::No },
                mac,
                more_pending,
            };
            let frame = build_data_down(&mut s, d);
            let got = sim
                .receive(&frame)
                .unwrap_or_else(|e| panic!("{version:?} {confirmed:?} {ack}: {e}"));
            assert_eq!(got.ack, ack);
            assert_eq!(frame[5] & 0x10 != 0, more_pending, "FPending");
            assert_eq!(
                crate::maccommand::encode(&got.mac),
                if mac.len() > 15 {
                    vec![0x06; 16]
                } else {
                    mac.to_vec()
                }
            );
            match confirmed {
                Some(c) => {
                    assert_eq!(
                        (got.fport, got.payload.as_slice(), got.confirmed),
                        (Some(8), &[0x11, 0x22][..], c)
                    );
                    assert_eq!(it.unwrap().sent_fcnt, Some(0));
                    assert_eq!(s.pending_confirmed_down, c.then_some(0));
                }
                None => assert_eq!(got.fport, (mac.len() > 15).then_some(0)),
            }
            // 1.1 counts application downlinks apart.
            let app = version.is_11() && confirmed.is_some();
            assert_eq!((s.n_fcnt_down, s.a_fcnt_down), if app { (0, 1) } else { (1, 0) });
        }
    }
}
