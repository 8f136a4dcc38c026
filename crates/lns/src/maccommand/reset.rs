//! ResetInd / ResetConf (TS001 §5.1, 1.1 ABP): the device reset and starts its counters again.

use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "reset_ind";

/// Confirms the highest minor version both sides speak (1.1) and restarts the downlink counters.
pub(super) fn handle(s: &mut Session, minor: u8) -> DownCommand {
    s.n_fcnt_down = 0;
    s.a_fcnt_down = 0;
    DownCommand::ResetConf { minor: minor.min(1) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    #[test]
    fn confirms_and_restarts_the_counters() {
        for (minor, confirmed) in [(0, 0), (1, 1), (2, 1), (15, 1)] {
            let mut s = session();
            (s.n_fcnt_down, s.a_fcnt_down) = (7, 9);
            assert_eq!(handle(&mut s, minor), DownCommand::ResetConf { minor: confirmed });
            assert_eq!((s.n_fcnt_down, s.a_fcnt_down), (0, 0));
        }
    }
}
