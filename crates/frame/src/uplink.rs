//! An uplink parsed once at the edge (a gateway reception, or a frame a peer forwarded):
//! the owned PHYPayload with every header field, so dedup, routing, policy, usage,
//! forwarding and the network server all read one value and none parses the bytes again.

use std::sync::atomic::{AtomicU64, Ordering};

use entente_model::{DevAddr, DevEui, JoinEui};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::phy::{self, DataFrame, FCtrlUp, JoinRequest, MType, Phy, PhyError};

/// Uplink PHYPayloads parsed in this process (see [`uplink_parses`]).
static UPLINK_PARSES: AtomicU64 = AtomicU64::new(0);

/// How many uplink PHYPayloads this process has parsed: the proof, exported as a metric,
/// that a frame is parsed once per node however many steps read it.
pub fn uplink_parses() -> u64 {
    UPLINK_PARSES.load(Ordering::Relaxed)
}

pub(crate) fn count_uplink_parse() {
    UPLINK_PARSES.fetch_add(1, Ordering::Relaxed);
}

/// The fields of a data uplink's header; the byte ranges point into the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub mtype: MType,
    pub dev_addr: DevAddr,
    pub fctrl: FCtrlUp,
    pub fcnt16: u16,
    pub fport: Option<u8>,
    pub mic: [u8; 4],
    /// End of FOpts (start of FPort, or of the MIC when there is no FPort).
    fopts_end: u8,
}

/// What an uplink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkKind {
    Join(JoinRequest),
    Data(DataHeader),
}

/// An uplink PHYPayload (JoinRequest or data up), parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkFrame {
    bytes: Vec<u8>,
    kind: UplinkKind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UplinkError {
    #[error(transparent)]
    Phy(#[from] PhyError),
    #[error("a {0:?} is not an uplink")]
    NotAnUplink(MType),
}

impl UplinkFrame {
    /// Parses an uplink; anything else (a downlink, a proprietary frame) is refused.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, UplinkError> {
        let kind = match phy::parse(&bytes)? {
            Phy::JoinRequest(j) => UplinkKind::Join(j),
            Phy::Data(d) if matches!(d.mtype, MType::UnconfirmedUp | MType::ConfirmedUp) => {
                UplinkKind::Data(DataHeader {
                    mtype: d.mtype,
                    dev_addr: d.dev_addr,
                    fctrl: d.fctrl,
                    fcnt16: d.fcnt16,
                    fport: d.fport,
                    mic: d.mic,
                    // FOpts end at most at byte 8 + 15.
                    fopts_end: (8 + d.fopts.len()) as u8,
                })
            }
            Phy::Data(d) => return Err(UplinkError::NotAnUplink(d.mtype)),
        };
        Ok(UplinkFrame { bytes, kind })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn kind(&self) -> &UplinkKind {
        &self.kind
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn mtype(&self) -> MType {
        match &self.kind {
            UplinkKind::Join(_) => MType::JoinRequest,
            UplinkKind::Data(d) => d.mtype,
        }
    }

    pub fn join_request(&self) -> Option<&JoinRequest> {
        match &self.kind {
            UplinkKind::Join(j) => Some(j),
            UplinkKind::Data(_) => None,
        }
    }

    pub fn dev_addr(&self) -> Option<DevAddr> {
        match &self.kind {
            UplinkKind::Data(d) => Some(d.dev_addr),
            UplinkKind::Join(_) => None,
        }
    }

    /// The JoinEUI and DevEUI of a JoinRequest.
    pub fn join_euis(&self) -> Option<(JoinEui, DevEui)> {
        self.join_request().map(|j| (j.join_eui, j.dev_eui))
    }

    /// The borrowed view of a data uplink, built from the parsed header (no parsing).
    pub fn data(&self) -> Option<DataFrame<'_>> {
        let UplinkKind::Data(h) = &self.kind else {
            return None;
        };
        let b = &self.bytes[..];
        let mic_at = b.len().checked_sub(4)?;
        let fopts_end = usize::from(h.fopts_end);
        let frm_payload = match h.fport {
            Some(_) => b.get(fopts_end + 1..mic_at)?,
            None => b.get(mic_at..mic_at)?,
        };
        Some(DataFrame {
            mtype: h.mtype,
            dev_addr: h.dev_addr,
            fctrl: h.fctrl,
            fcnt16: h.fcnt16,
            fopts: b.get(8..fopts_end)?,
            fport: h.fport,
            frm_payload,
            mic: h.mic,
            signed: b.get(..mic_at)?,
        })
    }

    /// The bytes a JoinRequest's MIC covers.
    pub fn signed(&self) -> &[u8] {
        &self.bytes[..self.bytes.len().saturating_sub(4)]
    }
}

/// On the wire an uplink is its bytes; a receiver parses (and so checks) them once.
impl Serialize for UplinkFrame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for UplinkFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?.into_vec();
        if bytes.len() > 255 {
            return Err(serde::de::Error::custom("a PHYPayload is at most 255 bytes"));
        }
        UplinkFrame::parse(bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_up(fopts: &[u8], fport: Option<u8>, payload: &[u8]) -> Vec<u8> {
        let mut v = phy::build_data(
            MType::ConfirmedUp,
            DevAddr(0x2601_0203),
            0x80,
            7,
            fopts,
            fport,
            payload,
        );
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn the_view_matches_a_fresh_parse() {
        for (fopts, fport, payload) in [
            (&[][..], None, &[][..]),
            (&[0x02][..], Some(5), &[9, 8, 7][..]),
            (&[][..], Some(0), &[0x02][..]),
            (&[0x03, 0x07][..], None, &[][..]),
        ] {
            let bytes = data_up(fopts, fport, payload);
            let f = UplinkFrame::parse(bytes.clone()).unwrap();
            let Ok(Phy::Data(fresh)) = phy::parse(&bytes) else {
                panic!()
            };
            assert_eq!(f.data().unwrap(), fresh);
            assert_eq!(f.dev_addr(), Some(DevAddr(0x2601_0203)));
        }
    }

    #[test]
    fn downlinks_and_proprietary_frames_are_not_uplinks() {
        let mut down = phy::build_data(MType::UnconfirmedDown, DevAddr(1), 0, 1, &[], Some(1), &[1]);
        down.extend_from_slice(&[0; 4]);
        assert_eq!(
            UplinkFrame::parse(down),
            Err(UplinkError::NotAnUplink(MType::UnconfirmedDown))
        );
        assert!(UplinkFrame::parse(vec![0xe0; 20]).is_err());
        assert!(UplinkFrame::parse(vec![]).is_err());
    }

    #[test]
    fn parses_are_counted_and_a_round_trip_parses_again() {
        let bytes = data_up(&[], Some(1), &[1]);
        let before = uplink_parses();
        let f = UplinkFrame::parse(bytes).unwrap();
        let json = serde_json::to_vec(&f).unwrap();
        let back: UplinkFrame = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, f);
        // Other tests parse in parallel: at least our two.
        assert!(uplink_parses() >= before + 2);
        let long: Result<UplinkFrame, _> = serde_json::from_str(&format!("{:?}", vec![0x40u8; 300]));
        assert!(long.is_err());
    }
}
