//! PHYPayload codec (TS001 §4): zero-copy parsing of uplinks, building of downlinks.
//!
//! One codec for 1.0.x and 1.1 (the framing is the same; only the crypto differs). The
//! `lorawan` and `lrwn` crates are used as independent oracles in the tests.

use entente_model::{DevAddr, DevEui, JoinEui};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MType {
    JoinRequest,
    JoinAccept,
    UnconfirmedUp,
    UnconfirmedDown,
    ConfirmedUp,
    ConfirmedDown,
    RejoinRequest,
    Proprietary,
}

impl MType {
    pub fn from_mhdr(mhdr: u8) -> MType {
        match mhdr >> 5 {
            0 => MType::JoinRequest,
            1 => MType::JoinAccept,
            2 => MType::UnconfirmedUp,
            3 => MType::UnconfirmedDown,
            4 => MType::ConfirmedUp,
            5 => MType::ConfirmedDown,
            6 => MType::RejoinRequest,
            _ => MType::Proprietary,
        }
    }
    pub fn mhdr(self) -> u8 {
        let t: u8 = match self {
            MType::JoinRequest => 0,
            MType::JoinAccept => 1,
            MType::UnconfirmedUp => 2,
            MType::UnconfirmedDown => 3,
            MType::ConfirmedUp => 4,
            MType::ConfirmedDown => 5,
            MType::RejoinRequest => 6,
            MType::Proprietary => 7,
        };
        t << 5 // Major = 0 (LoRaWAN R1)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhyError {
    #[error("PHYPayload of {0} bytes is too short")]
    TooShort(usize),
    #[error("unsupported LoRaWAN major version {0}")]
    Major(u8),
    #[error("message type {0:?} is not handled here")]
    Unsupported(MType),
    #[error("FOptsLen {0} overruns the frame")]
    FOpts(u8),
    #[error("MAC commands both in FOpts and in FPort 0")]
    MacTwice,
}

/// A parsed JoinRequest; EUIs in display (big-endian) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRequest {
    pub join_eui: JoinEui,
    pub dev_eui: DevEui,
    pub dev_nonce: u16,
    pub mic: [u8; 4],
}

/// FCtrl bits of an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FCtrlUp(pub u8);

impl FCtrlUp {
    pub fn adr(self) -> bool {
        self.0 & 0x80 != 0
    }
    pub fn adr_ack_req(self) -> bool {
        self.0 & 0x40 != 0
    }
    pub fn ack(self) -> bool {
        self.0 & 0x20 != 0
    }
    pub fn class_b(self) -> bool {
        self.0 & 0x10 != 0
    }
    pub fn fopts_len(self) -> usize {
        (self.0 & 0x0f) as usize
    }
}

/// A parsed data frame, borrowing the PHYPayload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    pub mtype: MType,
    pub dev_addr: DevAddr,
    pub fctrl: FCtrlUp,
    pub fcnt16: u16,
    pub fopts: &'a [u8],
    pub fport: Option<u8>,
    pub frm_payload: &'a [u8],
    pub mic: [u8; 4],
    /// MHDR..FRMPayload: the bytes the MIC covers.
    pub signed: &'a [u8],
}

impl DataFrame<'_> {
    pub fn confirmed(&self) -> bool {
        matches!(self.mtype, MType::ConfirmedUp | MType::ConfirmedDown)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phy<'a> {
    JoinRequest(JoinRequest),
    Data(DataFrame<'a>),
}

fn eui_from_le(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, i) in out.iter_mut().zip(b.iter().rev()) {
        *o = *i;
    }
    out
}

/// EUI in display order to the little-endian order of the air.
pub fn eui_le(display: [u8; 8]) -> [u8; 8] {
    let mut out = display;
    out.reverse();
    out
}

/// Parses an uplink (JoinRequest or data up) or, for devices, a data downlink.
pub fn parse(b: &[u8]) -> Result<Phy<'_>, PhyError> {
    let Some(&mhdr) = b.first() else {
        return Err(PhyError::TooShort(0));
    };
    if mhdr & 0x03 != 0 {
        return Err(PhyError::Major(mhdr & 0x03));
    }
    let mtype = MType::from_mhdr(mhdr);
    if matches!(
        mtype,
        MType::JoinRequest | MType::UnconfirmedUp | MType::ConfirmedUp
    ) {
        crate::uplink::count_uplink_parse();
    }
    match mtype {
        MType::JoinRequest => {
            if b.len() != 23 {
                return Err(PhyError::TooShort(b.len()));
            }
            Ok(Phy::JoinRequest(JoinRequest {
                join_eui: JoinEui(eui_from_le(&b[1..9])),
                dev_eui: DevEui(eui_from_le(&b[9..17])),
                dev_nonce: u16::from_le_bytes([b[17], b[18]]),
                mic: [b[19], b[20], b[21], b[22]],
            }))
        }
        MType::UnconfirmedUp | MType::ConfirmedUp | MType::UnconfirmedDown | MType::ConfirmedDown => {
            // MHDR(1) + DevAddr(4) + FCtrl(1) + FCnt(2) + MIC(4)
            if b.len() < 12 {
                return Err(PhyError::TooShort(b.len()));
            }
            let mic_at = b.len() - 4;
            let fctrl = FCtrlUp(b[5]);
            let fopts_end = 8 + fctrl.fopts_len();
            if fopts_end > mic_at {
                return Err(PhyError::FOpts(fctrl.0 & 0x0f));
            }
            let (fport, frm_payload) = if fopts_end < mic_at {
                (Some(b[fopts_end]), &b[fopts_end + 1..mic_at])
            } else {
                (None, &b[mic_at..mic_at])
            };
            if fport == Some(0) && fctrl.fopts_len() > 0 {
                return Err(PhyError::MacTwice);
            }
            Ok(Phy::Data(DataFrame {
                mtype,
                dev_addr: DevAddr(u32::from_le_bytes([b[1], b[2], b[3], b[4]])),
                fctrl,
                fcnt16: u16::from_le_bytes([b[6], b[7]]),
                fopts: &b[8..fopts_end],
                fport,
                frm_payload,
                mic: [b[mic_at], b[mic_at + 1], b[mic_at + 2], b[mic_at + 3]],
                signed: &b[..mic_at],
            }))
        }
        other => Err(PhyError::Unsupported(other)),
    }
}

/// Builds the unsigned part (MHDR..FRMPayload) of a data frame; the caller appends the MIC.
pub fn build_data(
    mtype: MType,
    dev_addr: DevAddr,
    fctrl: u8,
    fcnt: u32,
    fopts: &[u8],
    fport: Option<u8>,
    frm_payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(13 + fopts.len() + frm_payload.len());
    v.push(mtype.mhdr());
    v.extend_from_slice(&dev_addr.0.to_le_bytes());
    v.push((fctrl & 0xf0) | (fopts.len() as u8 & 0x0f));
    v.extend_from_slice(&(fcnt as u16).to_le_bytes());
    v.extend_from_slice(fopts);
    if let Some(p) = fport {
        v.push(p);
        v.extend_from_slice(frm_payload);
    }
    v
}

/// Builds the signed part of a JoinRequest (the caller appends the MIC).
pub fn build_join_request(join_eui: JoinEui, dev_eui: DevEui, dev_nonce: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(23);
    v.push(MType::JoinRequest.mhdr());
    v.extend_from_slice(&eui_le(join_eui.0));
    v.extend_from_slice(&eui_le(dev_eui.0));
    v.extend_from_slice(&dev_nonce.to_le_bytes());
    v
}
