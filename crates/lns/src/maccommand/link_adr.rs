//! LinkADRReq / LinkADRAns (TS001 §5.3) and the ADR that decides them: a simple
//! SNR-margin ADR raising the data rate while the best recent SNR leaves room.

use entente_region::Eu868;

use super::demod_floor_db;
use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "link_adr_ans";

/// How many SNR readings ADR looks at.
pub(crate) const ADR_HISTORY: usize = 20;
/// Installation margin ADR keeps, in dB.
const ADR_MARGIN_DB: f32 = 10.0;
/// The fastest EU868 LoRa data rate ADR steers to.
const MAX_DR: u8 = 5;

/// Keeps the last [`ADR_HISTORY`] SNRs of the best gateway.
pub(crate) fn remember_snr(s: &mut Session, snr: f32) {
    s.snr_history.push(snr);
    if s.snr_history.len() > ADR_HISTORY {
        s.snr_history.remove(0);
    }
}

fn sf_of(dr_index: u8) -> u8 {
    match Eu868::data_rate(dr_index) {
        Ok(entente_region::DataRate::Lora { sf, .. }) => sf.get(),
        _ => 7,
    }
}

/// Once the history is full: a faster data rate if the best SNR leaves room for one.
pub(super) fn request(s: &mut Session, dr: u8) -> Option<DownCommand> {
    if s.snr_history.len() < ADR_HISTORY {
        return None;
    }
    let max = s.snr_history.iter().copied().fold(f32::MIN, f32::max);
    let headroom = max - demod_floor_db(sf_of(dr)) - ADR_MARGIN_DB;
    // At most MAX_DR steps whatever the SNR said (a NaN gives none).
    let steps = (headroom / 2.5).floor().clamp(0.0, f32::from(MAX_DR)) as u8;
    if steps == 0 || dr >= MAX_DR {
        return None;
    }
    let new_dr = dr.saturating_add(steps).min(MAX_DR);
    s.snr_history.clear();
    Some(DownCommand::LinkAdrReq {
        data_rate: new_dr,
        tx_power: s.tx_power_index,
        ch_mask: if s.channels_configured { 0x00ff } else { 0x0007 },
        ch_mask_cntl: 0,
        nb_trans: 1,
    })
}

/// A refusal starts the measurements again.
pub(super) fn handle(s: &mut Session, all_accepted: bool) {
    if !all_accepted {
        s.snr_history.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    #[test]
    fn adr_steps_up_while_the_snr_leaves_room() {
        // (readings, best SNR, uplink DR, channels configured, new DR or None)
        let cases = [
            (19, 20.0, 0, true, None),                  // history not full yet
            (20, 20.0, 0, true, Some((5, 0x00ff))),     // SF12: 20 - (-20) - 10 = 30 dB: capped at DR5
            (20, -7.0, 0, false, Some((1, 0x0007))),    // 3 dB of headroom: one step
            (20, -8.0, 0, true, None),                  // 2 dB: not a whole step
            (20, 10.0, 5, true, None),                  // already at DR5
            (20, 0.0, 3, true, Some((4, 0x00ff))),      // SF9: 0 - (-12.5) - 10 = 2.5 dB: one step
            (20, f32::MAX, 0, true, Some((5, 0x00ff))), // an absurd SNR: still capped
            (20, f32::INFINITY, 4, true, Some((5, 0x00ff))),
            (20, f32::NAN, 0, true, None),
        ];
        for (n, best, dr, channels, want) in cases {
            let mut s = session();
            s.channels_configured = channels;
            s.tx_power_index = 2;
            s.snr_history = vec![best - 5.0; n];
            s.snr_history[0] = best;
            let got = request(&mut s, dr);
            let want = want.map(|(data_rate, ch_mask)| DownCommand::LinkAdrReq {
                data_rate,
                tx_power: 2,
                ch_mask,
                ch_mask_cntl: 0,
                nb_trans: 1,
            });
            assert_eq!(got, want, "{n} readings, best {best}, DR{dr}");
            assert_eq!(s.snr_history.is_empty(), want.is_some());
        }
    }

    #[test]
    fn history_keeps_the_last_twenty() {
        let mut s = session();
        for i in 0..25 {
            remember_snr(&mut s, i as f32);
        }
        assert_eq!(s.snr_history.len(), ADR_HISTORY);
        assert_eq!(s.snr_history[0], 5.0);
    }

    #[test]
    fn a_refusal_restarts_the_measurements() {
        for (accepted, kept) in [(true, 3), (false, 0)] {
            let mut s = session();
            s.snr_history = vec![1.0; 3];
            handle(&mut s, accepted);
            assert_eq!(s.snr_history.len(), kept);
        }
    }
}
