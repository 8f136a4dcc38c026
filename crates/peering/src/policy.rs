//! Who may roam on whose network, frame by frame. The roster's `roams_on` flag is the
//! fallback policy; the agreements implement the same trait, so the enforcement points in
//! the service do not change when the policy does.

use std::sync::Arc;

use entente_frame::phy::{self, MType, Phy};
use entente_frame::{UplinkFrame, UplinkKind};
use entente_model::{DevAddr, DevEui, Flow, MemberId};

use crate::roster::Roster;

/// What the federation knows of one roamed frame when it asks the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameFacts {
    pub home: MemberId,
    pub visited: MemberId,
    pub flow: Flow,
    /// Known for joins; for data frames only the home node can resolve it.
    pub dev_eui: Option<DevEui>,
    pub dev_addr: Option<DevAddr>,
    /// A downlink (join accept included): the declared frequency limits uplinks only.
    pub downlink: bool,
}

impl FrameFacts {
    /// What a parsed uplink shows.
    pub fn of_uplink(home: MemberId, visited: MemberId, frame: &UplinkFrame) -> FrameFacts {
        match frame.kind() {
            UplinkKind::Join(j) => FrameFacts {
                home,
                visited,
                flow: Flow::Join,
                dev_eui: Some(j.dev_eui),
                dev_addr: None,
                downlink: false,
            },
            UplinkKind::Data(d) => FrameFacts {
                home,
                visited,
                flow: match d.fport {
                    None | Some(0) => Flow::Mac,
                    Some(_) => Flow::UplinkData,
                },
                dev_eui: None,
                dev_addr: Some(d.dev_addr),
                downlink: false,
            },
        }
    }

    /// What a downlink PHYPayload (a join accept or a data downlink) shows; `None` when it
    /// is neither.
    pub fn of_downlink(home: MemberId, visited: MemberId, phy_payload: &[u8]) -> Option<FrameFacts> {
        let mhdr = *phy_payload.first()?;
        if MType::from_mhdr(mhdr) == MType::JoinAccept {
            return Some(FrameFacts {
                home,
                visited,
                flow: Flow::Join,
                dev_eui: None,
                dev_addr: None,
                downlink: true,
            });
        }
        match phy::parse(phy_payload).ok()? {
            Phy::Data(d) if matches!(d.mtype, MType::UnconfirmedDown | MType::ConfirmedDown) => {
                Some(FrameFacts {
                    home,
                    visited,
                    flow: match d.fport {
                        None | Some(0) => Flow::Mac,
                        Some(_) => Flow::DownlinkData,
                    },
                    dev_eui: None,
                    dev_addr: Some(d.dev_addr),
                    downlink: true,
                })
            }
            _ => None,
        }
    }
}

/// Why a roamed frame was refused; the label is what metrics and the API show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// No agreement in force between the two members covers roaming.
    NoAgreement,
    /// An agreement is in force but does not allow this kind of traffic.
    FlowNotAllowed,
    /// The device is not declared under an agreement with the visited member.
    UndeclaredDevice,
    /// Two guests declare the device: it is neither's.
    DeclaredTwice,
    /// Over the device's rate derived from its declared frequency.
    DeviceRateLimited,
    /// Over the agreement's total rate.
    AgreementRateLimited,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoAgreement => "no_agreement",
            Refusal::FlowNotAllowed => "flow_not_allowed",
            Refusal::UndeclaredDevice => "undeclared_device",
            Refusal::DeclaredTwice => "declared_twice",
            Refusal::DeviceRateLimited => "rate_limited_device",
            Refusal::AgreementRateLimited => "rate_limited_agreement",
        }
    }
}

/// How frames that passed the check travel (the agreement's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Receptions of one frame forwarded at most (the best first).
    pub max_copies: usize,
    /// Keep frames for an unreachable home node (48 h), or drop them.
    pub buffer_when_unreachable: bool,
    /// Downlinks at any time (Class C) for the home's devices: only if the agreement
    /// declares Class C devices.
    pub class_c: bool,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            max_copies: crate::protocol::MAX_RX_PER_FRAME,
            buffer_when_unreachable: true,
            class_c: true,
        }
    }
}

pub trait RoamingPolicy: Send + Sync {
    /// May this frame of `home`'s device pass through `visited`'s network? Called once per
    /// frame on each side, before anything is known of its authenticity: spends nothing.
    fn check(&self, frame: &FrameFacts) -> Result<(), Refusal>;

    /// Spends the frame's share of the rate limits. Called at home only, once the network
    /// server verified the frame (MIC and counter), so forged or replayed frames cannot
    /// drain a device's allowance; a refusal means the frame is not counted.
    fn charge(&self, _frame: &FrameFacts) -> Result<(), Refusal> {
        Ok(())
    }

    /// The terms under which `home`'s frames travel through `visited`'s network.
    fn terms(&self, _home: &MemberId, _visited: &MemberId) -> Terms {
        Terms::default()
    }
}

/// The roster's flag: `home`'s entry lists `visited` in `roams_on`.
pub struct RosterPolicy(pub Arc<Roster>);

impl RoamingPolicy for RosterPolicy {
    fn check(&self, f: &FrameFacts) -> Result<(), Refusal> {
        let allowed = self
            .0
            .member(&f.home)
            .is_some_and(|m| m.roams_on.contains(&f.visited));
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NoAgreement)
        }
    }
}
