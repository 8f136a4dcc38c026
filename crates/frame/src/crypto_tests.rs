//! Crypto checked against RFC 4493 (the CMAC the MIC is built on) and against two
//! independent implementations: ChirpStack's `lrwn` (1.0 and 1.1) and the `lorawan` crate.

use proptest::prelude::*;

use super::crypto::*;
use crate::keys::AesKey;
use crate::phy;

fn lk(k: &AesKey) -> lrwn::AES128Key {
    lrwn::AES128Key::from_bytes(k.0)
}

/// Parses with lrwn and restores the 32-bit FCnt (the air carries only 16 bits).
fn lrwn_parse(frame: &[u8], fcnt: u32) -> lrwn::PhyPayload {
    let mut p = lrwn::PhyPayload::from_slice(frame).unwrap();
    if let lrwn::Payload::MACPayload(m) = &mut p.payload {
        m.fhdr.f_cnt = fcnt;
    }
    p
}

#[test]
fn cmac_matches_rfc4493_examples() {
    let key: AesKey = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
    let msg = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
    // RFC 4493 example 2: AES-CMAC = 070a16b4 6b4d4144 f79bdd9d d04a287c; the MIC is its first 4 bytes.
    assert_eq!(join_request_mic(&key, &msg), [0x07, 0x0a, 0x16, 0xb4]);
    // Example 1 (empty message): bb1d6929 e9593728 7fa37d12 9b756746.
    assert_eq!(join_request_mic(&key, &[]), [0xbb, 0x1d, 0x69, 0x29]);
}

fn data_up(dev_addr: u32, fcnt: u32, fport: u8, payload: &[u8], fopts: &[u8]) -> Vec<u8> {
    phy::build_data(
        phy::MType::UnconfirmedUp,
        entente_model::DevAddr(dev_addr),
        0x80,
        fcnt,
        fopts,
        Some(fport),
        payload,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn uplink_10_agrees_with_lrwn_and_lorawan(key in any::<[u8;16]>(), app in any::<[u8;16]>(),
        dev_addr in any::<u32>(), fcnt in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 1..60)) {
        let nwk = AesKey(key);
        let app = AesKey(app);
        let mut enc = payload.clone();
        crypt_frm_payload(&app, Dir::Up, dev_addr, fcnt, &mut enc);
        let mut frame = data_up(dev_addr, fcnt, 10, &enc, &[]);
        let mic = uplink_mic_10(&nwk, dev_addr, fcnt, &frame);
        frame.extend_from_slice(&mic);

        let parsed = lrwn_parse(&frame, fcnt);
        prop_assert!(parsed.validate_uplink_data_mic(lrwn::MACVersion::LoRaWAN1_0, 0, 0, 0, &lk(&nwk), &lk(&nwk)).unwrap());
        let mut p2 = parsed.clone();
        p2.decrypt_frm_payload(&lk(&app)).unwrap();
        if let lrwn::Payload::MACPayload(m) = &p2.payload {
            prop_assert_eq!(m.frm_payload.clone(), Some(lrwn::FRMPayload::Raw(payload.clone())));
        } else { prop_assert!(false, "not a MAC payload"); }

        let mut buf = frame.clone();
        match lorawan::parser::parse(&mut buf[..]).unwrap() {
            lorawan::parser::PhyPayload::Data(lorawan::parser::DataPayload::Encrypted(e)) => {
                prop_assert!(e.validate_mic(&lorawan::keys::AES128(nwk.0), fcnt));
            }
            _ => prop_assert!(false, "lorawan crate did not parse a data frame"),
        }
    }

    #[test]
    fn uplink_11_agrees_with_lrwn(f in any::<[u8;16]>(), s in any::<[u8;16]>(), conf in any::<u16>(),
        dr in 0u8..6, ch in 0u8..16, dev_addr in any::<u32>(), fcnt in any::<u32>()) {
        let (f, s) = (AesKey(f), AesKey(s));
        let ctx = Uplink11Ctx { conf_fcnt: conf, tx_dr: dr, tx_ch: ch };
        // ACK set, so ConfFCnt enters the MIC.
        let mut frame = phy::build_data(phy::MType::ConfirmedUp, entente_model::DevAddr(dev_addr), 0xa0, fcnt, &[], Some(3), &[1, 2, 3]);
        let mic = uplink_mic_11(&f, &s, ctx, dev_addr, fcnt, &frame);
        let half = uplink_mic_11_f_half(&f, dev_addr, fcnt, &frame);
        prop_assert_eq!(&mic[2..], &half[..]);
        frame.extend_from_slice(&mic);
        let parsed = lrwn_parse(&frame, fcnt);
        prop_assert!(parsed.validate_uplink_data_mic(lrwn::MACVersion::LoRaWAN1_1, conf as u32, dr, ch, &lk(&f), &lk(&s)).unwrap());
    }

    #[test]
    fn downlink_mic_and_fopts_agree_with_lrwn(k in any::<[u8;16]>(), enc in any::<[u8;16]>(), conf in any::<u16>(),
        dev_addr in any::<u32>(), fcnt in any::<u32>(), a_fcnt in any::<bool>()) {
        let k = AesKey(k);
        let enc_key = AesKey(enc);
        let plain_fopts = [0x02u8, 7, 3];
        let mut fopts = plain_fopts;
        crypt_fopts_11(&enc_key, Dir::Down, a_fcnt, dev_addr, fcnt, &mut fopts);
        let theirs = lrwn::encrypt_f_opts(&lk(&enc_key), a_fcnt, false, &lrwn::DevAddr::from_be_bytes(dev_addr.to_be_bytes()), fcnt, &plain_fopts).unwrap();
        prop_assert_eq!(fopts.to_vec(), theirs);

        let mut frame = phy::build_data(phy::MType::UnconfirmedDown, entente_model::DevAddr(dev_addr), 0x20, fcnt, &[], Some(1), &[9, 9]);
        for version in [lrwn::MACVersion::LoRaWAN1_0, lrwn::MACVersion::LoRaWAN1_1] {
            let c = if version == lrwn::MACVersion::LoRaWAN1_0 { 0 } else { conf };
            let mut f2 = frame.clone();
            f2.extend_from_slice(&downlink_mic(&k, c, dev_addr, fcnt, &frame));
            let mut parsed = lrwn_parse(&f2, fcnt);
            prop_assert!(parsed.validate_downlink_data_mic(version, c as u32, &lk(&k)).unwrap());
        }
        frame.clear();
    }

    #[test]
    fn join_keys_agree_with_lrwn(nwk in any::<[u8;16]>(), app in any::<[u8;16]>(), jn in 0u32..0x00ff_ffff,
        net_id in 0u32..0x00ff_ffff, dn in any::<u16>(), join_eui in any::<[u8;8]>(), dev_eui in any::<[u8;8]>()) {
        let (nwk, app) = (AesKey(nwk), AesKey(app));
        let lnet = lrwn::NetID::from_be_bytes({ let b = net_id.to_be_bytes(); [b[1], b[2], b[3]] });
        let ljoin = lrwn::EUI64::from_be_bytes(join_eui);
        let (nwk_s, app_s) = derive_session_10(&app, jn, net_id, dn);
        prop_assert_eq!(nwk_s.0, lrwn::keys::get_f_nwk_s_int_key(false, &lk(&app), &lnet, &ljoin, jn, dn).unwrap().to_bytes());
        prop_assert_eq!(app_s.0, lrwn::keys::get_app_s_key(false, &lk(&app), &lnet, &ljoin, jn, dn).unwrap().to_bytes());

        let k = derive_session_11(&nwk, &app, jn, phy::eui_le(join_eui), dn);
        prop_assert_eq!(k.f_nwk_s_int_key.0, lrwn::keys::get_f_nwk_s_int_key(true, &lk(&nwk), &lnet, &ljoin, jn, dn).unwrap().to_bytes());
        prop_assert_eq!(k.s_nwk_s_int_key.0, lrwn::keys::get_s_nwk_s_int_key(true, &lk(&nwk), &lnet, &ljoin, jn, dn).unwrap().to_bytes());
        prop_assert_eq!(k.nwk_s_enc_key.0, lrwn::keys::get_nwk_s_enc_key(true, &lk(&nwk), &lnet, &ljoin, jn, dn).unwrap().to_bytes());
        prop_assert_eq!(k.app_s_key.0, lrwn::keys::get_app_s_key(true, &lk(&app), &lnet, &ljoin, jn, dn).unwrap().to_bytes());
        let ldev = lrwn::EUI64::from_be_bytes(dev_eui);
        prop_assert_eq!(js_int_key(&nwk, phy::eui_le(dev_eui)).0, lrwn::keys::get_js_int_key(&ldev, &lk(&nwk)).unwrap().to_bytes());
        prop_assert_eq!(js_enc_key(&nwk, phy::eui_le(dev_eui)).0, lrwn::keys::get_js_enc_key(&ldev, &lk(&nwk)).unwrap().to_bytes());
    }

    #[test]
    fn join_request_mic_agrees_with_lrwn_and_lorawan(key in any::<[u8;16]>(), join_eui in any::<[u8;8]>(),
        dev_eui in any::<[u8;8]>(), dn in any::<u16>()) {
        let key = AesKey(key);
        let mut frame = phy::build_join_request(entente_model::JoinEui(join_eui), entente_model::DevEui(dev_eui), dn);
        let mic = join_request_mic(&key, &frame);
        frame.extend_from_slice(&mic);
        let parsed = lrwn::PhyPayload::from_slice(&frame).unwrap();
        prop_assert!(parsed.validate_join_request_mic(&lk(&key)).unwrap());
        if let lrwn::Payload::JoinRequest(j) = &parsed.payload {
            prop_assert_eq!(j.dev_eui.to_be_bytes(), dev_eui);
            prop_assert_eq!(j.join_eui.to_be_bytes(), join_eui);
        }
        let ours = phy::parse(&frame).unwrap();
        prop_assert_eq!(ours, phy::Phy::JoinRequest(phy::JoinRequest {
            join_eui: entente_model::JoinEui(join_eui), dev_eui: entente_model::DevEui(dev_eui), dev_nonce: dn, mic }));
        let mut buf = frame.clone();
        match lorawan::parser::parse(&mut buf[..]).unwrap() {
            lorawan::parser::PhyPayload::JoinRequest(j) => prop_assert!(j.validate_mic(&lorawan::keys::AES128(key.0))),
            _ => prop_assert!(false, "lorawan crate did not parse a join request"),
        }
    }
}
