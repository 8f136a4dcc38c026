//! Join server: the JoinRequest flow ([`request`]) and JoinAccept construction for 1.0.x
//! and 1.1 (TS001 §6.2.3).

pub(crate) mod request;
#[cfg(test)]
mod request_tests;

use entente_model::{DevAddr, DevEui, JoinEui};

use crate::crypto;
use crate::keys::AesKey;
use crate::phy::{MType, eui_le};

/// EU868 CFList: the five extra channels most networks use (RP002 §2.1.2 allows 3..15).
pub const EU868_CFLIST_HZ: [u32; 5] = [867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000];

#[derive(Debug, Clone)]
pub struct JoinAcceptParams {
    pub join_nonce: u32,
    pub net_id: u32,
    pub dev_addr: DevAddr,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    pub rx_delay: u8,
    /// Set for 1.1 devices: OptNeg in DLSettings, 1.1 MIC and key derivation.
    pub opt_neg: bool,
    pub cflist: bool,
}

fn cflist_bytes() -> [u8; 16] {
    let mut c = [0u8; 16];
    for (i, hz) in EU868_CFLIST_HZ.iter().enumerate() {
        c[i * 3..i * 3 + 3].copy_from_slice(&(hz / 100).to_le_bytes()[..3]);
    }
    c[15] = 0; // CFListType 0: frequencies
    c
}

/// The plaintext MHDR..CFList of a JoinAccept.
pub fn accept_plain(p: &JoinAcceptParams) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(MType::JoinAccept.mhdr());
    v.extend_from_slice(&p.join_nonce.to_le_bytes()[..3]);
    v.extend_from_slice(&p.net_id.to_le_bytes()[..3]);
    v.extend_from_slice(&p.dev_addr.0.to_le_bytes());
    v.push(((p.opt_neg as u8) << 7) | ((p.rx1_dr_offset & 0x07) << 4) | (p.rx2_dr & 0x0f));
    v.push(p.rx_delay & 0x0f);
    if p.cflist {
        v.extend_from_slice(&cflist_bytes());
    }
    v
}

/// Builds the encrypted JoinAccept PHYPayload.
/// `key` is AppKey for 1.0.x and NwkKey for 1.1; `dev_eui`, `join_eui`, `dev_nonce` feed the 1.1 MIC.
pub fn build_accept(
    p: &JoinAcceptParams,
    key: &AesKey,
    dev_eui: DevEui,
    join_eui: JoinEui,
    dev_nonce: u16,
) -> Vec<u8> {
    let mut v = accept_plain(p);
    let mic = if p.opt_neg {
        let js_int = crypto::js_int_key(key, eui_le(dev_eui.0));
        crypto::join_accept_mic_11(&js_int, 0xff, eui_le(join_eui.0), dev_nonce, &v)
    } else {
        crypto::join_accept_mic_10(key, &v)
    };
    v.extend_from_slice(&mic);
    crypto::encrypt_join_accept(key, &mut v[1..]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_accepts_check_with_lrwn() {
        let key: AesKey = "00112233445566778899aabbccddeeff".parse().unwrap();
        let dev_eui = DevEui([1, 2, 3, 4, 5, 6, 7, 8]);
        let join_eui = JoinEui([8, 7, 6, 5, 4, 3, 2, 1]);
        for opt_neg in [false, true] {
            for cflist in [false, true] {
                let p = JoinAcceptParams {
                    join_nonce: 0x00_0102,
                    net_id: 0x00_0013,
                    dev_addr: DevAddr(0x2601_1234),
                    rx1_dr_offset: 1,
                    rx2_dr: 3,
                    rx_delay: 5,
                    opt_neg,
                    cflist,
                };
                let bytes = build_accept(&p, &key, dev_eui, join_eui, 0x4242);
                let mut phy = lrwn::PhyPayload::from_slice(&bytes).unwrap();
                let lkey = lrwn::AES128Key::from_bytes(key.0);
                phy.decrypt_join_accept_payload(&lkey).unwrap();
                let ok = if opt_neg {
                    let js =
                        lrwn::keys::get_js_int_key(&lrwn::EUI64::from_be_bytes(dev_eui.0), &lkey).unwrap();
                    phy.validate_join_accept_mic(
                        lrwn::JoinType::Join,
                        &lrwn::EUI64::from_be_bytes(join_eui.0),
                        0x4242,
                        &js,
                    )
                    .unwrap()
                } else {
                    phy.validate_join_accept_mic(
                        lrwn::JoinType::Join,
                        &lrwn::EUI64::from_be_bytes(join_eui.0),
                        0,
                        &lkey,
                    )
                    .unwrap()
                };
                assert!(ok, "opt_neg={opt_neg} cflist={cflist}");
                let lrwn::Payload::JoinAccept(ja) = &phy.payload else {
                    panic!("not a join accept")
                };
                assert_eq!(ja.devaddr.to_be_bytes(), 0x2601_1234u32.to_be_bytes());
                assert_eq!(ja.rx_delay, 5);
                assert_eq!(ja.dl_settings.opt_neg, opt_neg);
                assert_eq!(ja.dl_settings.rx1_dr_offset, 1);
                assert_eq!(ja.dl_settings.rx2_dr, 3);
                assert_eq!(ja.cflist.is_some(), cflist);
            }
        }
    }
}
