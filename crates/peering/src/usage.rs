//! The usage hook: every roamed frame this side saw complete is told to it, with its
//! airtime, so the ledger can count it.

use chrono::{DateTime, Utc};
use entente_frame::UplinkFrame;
use entente_model::{DevAddr, MemberId};

use crate::service::{Peering, read};

/// A roamed frame this side saw complete: on the visited side, an uplink the home node
/// accepted or a downlink its gateway sent; on the home side, an uplink it accepted or a
/// downlink the visited gateway sent. The usage counters hang here.
pub struct Carried<'a> {
    pub home: &'a MemberId,
    pub visited: &'a MemberId,
    pub frame: CarriedFrame<'a>,
    pub airtime_us: u32,
    pub at: DateTime<Utc>,
}

/// The frame a [`Carried`] is about, as parsed where it entered this node.
#[derive(Debug, Clone, Copy)]
pub enum CarriedFrame<'a> {
    Uplink(&'a UplinkFrame),
    /// A downlink (built here, or relayed for a home node); its DevAddr when it is a data
    /// frame, `None` for a join accept.
    Downlink {
        phy_payload: &'a [u8],
        dev_addr: Option<DevAddr>,
    },
}

impl CarriedFrame<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            CarriedFrame::Uplink(f) => f.bytes(),
            CarriedFrame::Downlink { phy_payload, .. } => phy_payload,
        }
    }
}

pub trait UsageHook: Send + Sync {
    fn carried(&self, c: &Carried<'_>);
    /// Whether this very frame was already counted: a frame a visited node sends again
    /// after a crash, which the network server refuses as seen, was taken before.
    fn counted(&self, c: &Carried<'_>) -> bool;
}

/// Which way a frame went over the air (the modulations differ).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Uplink,
    Downlink,
}

pub(crate) fn airtime_us(dr: entente_region::DataRate, len: usize, direction: Direction) -> u32 {
    let m = match direction {
        Direction::Downlink => entente_region::Modulation::downlink(dr),
        Direction::Uplink => entente_region::Modulation::uplink(dr),
    };
    entente_region::time_on_air(m, len)
        .as_micros()
        .min(u32::MAX as u128) as u32
}

impl Peering {
    /// Whether the usage hook already counted this frame between `home` and `visited`.
    pub(crate) fn was_carried(&self, home: &MemberId, visited: &MemberId, frame: CarriedFrame<'_>) -> bool {
        let hook = read(&self.usage).clone();
        hook.is_some_and(|h| {
            h.counted(&Carried {
                home,
                visited,
                frame,
                airtime_us: 0,
                at: self.clock.now(),
            })
        })
    }

    /// Tells the usage hook, if one is installed, that a frame was carried.
    pub(crate) fn carried(
        &self,
        home: &MemberId,
        visited: &MemberId,
        frame: CarriedFrame<'_>,
        airtime_us: u32,
    ) {
        let hook = read(&self.usage).clone();
        if let Some(h) = hook {
            h.carried(&Carried {
                home,
                visited,
                frame,
                airtime_us,
                at: self.clock.now(),
            });
        }
    }
}
