//! The first step of a data uplink: which session the frame belongs to. Several devices
//! may share a DevAddr; the one whose keys verify the MIC is the one.

use super::data::Radio;
use crate::crypto::{self, Uplink11Ctx};
use crate::metrics::Rejection;
use crate::phy::DataFrame;
use crate::server::NetworkServer;
use crate::session::Session;
use crate::session_index::SessionIndex;
use crate::tables::Sessions;

impl NetworkServer {
    /// Finds the session whose keys verify the MIC among the devices sharing the DevAddr.
    pub(crate) fn match_session(
        &self,
        index: &mut SessionIndex,
        f: &DataFrame<'_>,
        radio: Radio,
    ) -> Result<(Session, u32), Rejection> {
        let store_err = |_| Rejection::Store;
        let devices = index.devices_at(&self.store, f.dev_addr).map_err(store_err)?;
        let any = !devices.is_empty();
        for eui in devices {
            let Some(s) = self.store.get::<Sessions>(eui).map_err(store_err)? else {
                continue;
            };
            let verified = fcnt_candidates(&s, f).find(|c| uplink_mic(&s, f, radio, *c) == f.mic);
            if let Some(fcnt) = verified {
                return Ok((s, fcnt));
            }
        }
        Err(if any {
            Rejection::MicFailed
        } else {
            Rejection::UnknownDevAddr
        })
    }
}

/// The 32-bit counter is in the MIC: an old frame replayed only verifies with the counter
/// it was sent with, one 16-bit epoch back.
fn fcnt_candidates(s: &Session, f: &DataFrame<'_>) -> impl Iterator<Item = u32> {
    let full = s.full_fcnt(f.fcnt16);
    let previous_epoch = full
        .checked_sub(0x1_0000)
        .filter(|p| s.fcnt_up.is_some_and(|l| *p <= l));
    std::iter::once(full).chain(previous_epoch)
}

fn uplink_mic(s: &Session, f: &DataFrame<'_>, radio: Radio, fcnt: u32) -> [u8; 4] {
    if !s.mac_version.is_11() {
        return crypto::uplink_mic_10(&s.f_nwk_s_int_key, f.dev_addr.0, fcnt, f.signed);
    }
    let conf_fcnt = if f.fctrl.ack() {
        s.pending_confirmed_down.unwrap_or(0) as u16
    } else {
        0
    };
    let ctx = Uplink11Ctx {
        conf_fcnt,
        tx_dr: radio.data_rate,
        tx_ch: radio.channel,
    };
    crypto::uplink_mic_11(
        &s.f_nwk_s_int_key,
        &s.s_nwk_s_int_key,
        ctx,
        f.dev_addr.0,
        fcnt,
        f.signed,
    )
}
