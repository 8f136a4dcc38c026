//! RXParamSetupReq / RXParamSetupAns (TS001 §5.4): RX1 DR offset, RX2 data rate.

use entente_region::Eu868;

use crate::device::Profile;
use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "rx_param_setup_ans";

/// Asks while the session's receive windows differ from the profile's.
pub(super) fn request(s: &Session, profile: &Profile) -> Option<DownCommand> {
    (s.rx1_dr_offset != profile.rx1_dr_offset || s.rx2_dr != profile.rx2_dr).then_some(
        DownCommand::RxParamSetupReq {
            rx1_dr_offset: profile.rx1_dr_offset,
            rx2_dr: profile.rx2_dr,
            frequency_hz: Eu868::RX2_FREQUENCY_HZ,
        },
    )
}

/// All three ACK bits: the device runs the profile's windows now.
pub(super) fn handle(s: &mut Session, status: u8, profile: Option<&Profile>) {
    if let Some(p) = profile.filter(|_| status & 0x07 == 0x07) {
        s.rx1_dr_offset = p.rx1_dr_offset;
        s.rx2_dr = p.rx2_dr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    fn profile() -> Profile {
        Profile {
            rx1_dr_offset: 2,
            rx2_dr: 3,
            ..Profile::default()
        }
    }

    #[test]
    fn asks_while_the_windows_differ() {
        // (session offset, session RX2 DR, asks)
        for (offset, rx2, asks) in [(0, 0, true), (2, 0, true), (0, 3, true), (2, 3, false)] {
            let mut s = session();
            (s.rx1_dr_offset, s.rx2_dr) = (offset, rx2);
            let want = asks.then_some(DownCommand::RxParamSetupReq {
                rx1_dr_offset: 2,
                rx2_dr: 3,
                frequency_hz: 869_525_000,
            });
            assert_eq!(request(&s, &profile()), want, "{offset} {rx2}");
        }
    }

    #[test]
    fn applies_only_a_full_ack_with_a_profile() {
        // (status, profile known, applied)
        for (status, known, applied) in [
            (0x07, true, true),
            (0xff, true, true),
            (0x06, true, false),
            (0x07, false, false),
        ] {
            let mut s = session();
            let p = profile();
            handle(&mut s, status, known.then_some(&p));
            assert_eq!(
                (s.rx1_dr_offset, s.rx2_dr) == (2, 3),
                applied,
                "{status:#x} {known}"
            );
        }
    }
}
