//! Arbitrary bytes as a LoRaWAN PHYPayload: the uplink parse the pipeline reads
//! (`UplinkFrame::parse`, once per reception), checked against the borrowed parse
//! (`phy::parse`); then what the network server does with a data frame before trusting
//! it: the MIC (1.0 and 1.1), FOpts decryption (1.1), FRMPayload decryption, and the MAC
//! commands of FOpts or of FPort 0. Frames that parse are rebuilt and must come out the
//! same.

#![no_main]

use entente_frame::crypto::{self, Dir, Uplink11Ctx};
use entente_frame::mac;
use entente_frame::phy::{self, DataFrame, MType, Phy};
use entente_frame::{AesKey, UplinkFrame, UplinkKind};
use libfuzzer_sys::fuzz_target;

const KEY: AesKey = AesKey([0x2b; 16]);

fuzz_target!(|data: &[u8]| {
    let parsed = phy::parse(data);
    match UplinkFrame::parse(data.to_vec()) {
        Ok(frame) => {
            assert_eq!(frame.bytes(), data);
            match (frame.kind(), &parsed) {
                (UplinkKind::Join(j), Ok(Phy::JoinRequest(p))) => {
                    assert_eq!(j, p);
                    join_request(data, p);
                }
                (UplinkKind::Data(_), Ok(Phy::Data(p))) => {
                    let Some(view) = frame.data() else {
                        panic!("a data uplink without a view: {frame:?}");
                    };
                    assert_eq!(&view, p, "the view differs from a fresh parse");
                    data_frame(data, &view);
                }
                (kind, parsed) => panic!("UplinkFrame {kind:?} but phy::parse {parsed:?}"),
            }
        }
        Err(_) => match &parsed {
            // Downlinks parse but are not uplinks.
            Ok(Phy::Data(d)) => {
                assert!(matches!(d.mtype, MType::UnconfirmedDown | MType::ConfirmedDown));
                data_frame(data, d);
            }
            Ok(Phy::JoinRequest(j)) => panic!("a JoinRequest UplinkFrame refuses: {j:?}"),
            Err(_) => {}
        },
    }
});

fn join_request(data: &[u8], j: &phy::JoinRequest) {
    let mut built = phy::build_join_request(j.join_eui, j.dev_eui, j.dev_nonce);
    let _ = crypto::join_request_mic(&KEY, &built);
    built.extend_from_slice(&j.mic);
    assert_eq!(
        without_rfu(&built),
        without_rfu(data),
        "JoinRequest rebuilt differs"
    );
}

fn data_frame(data: &[u8], d: &DataFrame<'_>) {
    let up = matches!(d.mtype, MType::UnconfirmedUp | MType::ConfirmedUp);
    let dir = if up { Dir::Up } else { Dir::Down };
    let addr = d.dev_addr.0;
    let fcnt = u32::from(d.fcnt16);
    let _ = crypto::uplink_mic_10(&KEY, addr, fcnt, d.signed);
    let _ = crypto::uplink_mic_11(&KEY, &KEY, Uplink11Ctx::default(), addr, fcnt, d.signed);
    let _ = crypto::downlink_mic(&KEY, 0, addr, fcnt, d.signed);

    let mut fopts = d.fopts.to_vec();
    crypto::crypt_fopts_11(&KEY, dir, false, addr, fcnt, &mut fopts);
    let mut payload = d.frm_payload.to_vec();
    crypto::crypt_frm_payload(&KEY, dir, addr, fcnt, &mut payload);
    for commands in [d.fopts, &fopts[..]]
        .into_iter()
        .chain((d.fport == Some(0)).then_some(&payload[..]))
    {
        if up {
            let _ = mac::parse_up(commands);
        } else {
            let _ = mac::parse_down(commands);
        }
    }

    let mut built = phy::build_data(
        d.mtype,
        d.dev_addr,
        d.fctrl.0,
        fcnt,
        d.fopts,
        d.fport,
        d.frm_payload,
    );
    built.extend_from_slice(&d.mic);
    assert_eq!(
        without_rfu(&built),
        without_rfu(data),
        "data frame rebuilt differs"
    );
}

/// The MHDR's RFU bits (4..2) are not kept by the parse.
fn without_rfu(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if let Some(mhdr) = v.first_mut() {
        *mhdr &= 0xe3;
    }
    v
}
