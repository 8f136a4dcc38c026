//! RXTimingSetupReq / RXTimingSetupAns (TS001 §5.7): the RX1 delay.

use crate::device::Profile;
use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "rx_timing_setup_ans";

/// Asks while the session's RX1 delay differs from the profile's.
pub(super) fn request(s: &Session, profile: &Profile) -> Option<DownCommand> {
    (s.rx_delay != profile.rx_delay).then_some(DownCommand::RxTimingSetupReq {
        delay: profile.rx_delay,
    })
}

/// The answer carries no status: the device took the profile's delay.
pub(super) fn handle(s: &mut Session, profile: Option<&Profile>) {
    if let Some(p) = profile {
        s.rx_delay = p.rx_delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    #[test]
    fn asks_until_answered() {
        // (session delay, profile delay, asks)
        for (have, want, asks) in [(1, 1, false), (1, 5, true), (15, 1, true)] {
            let mut s = session();
            s.rx_delay = have;
            let p = Profile {
                rx_delay: want,
                ..Profile::default()
            };
            assert_eq!(request(&s, &p).is_some(), asks, "{have} -> {want}");
            handle(&mut s, Some(&p));
            assert_eq!(request(&s, &p), None);
            handle(&mut s, None);
            assert_eq!(s.rx_delay, want);
        }
    }
}
