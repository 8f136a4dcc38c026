//! RekeyInd / RekeyConf (TS001 §5.10, 1.1 OTAA): the device confirms its new session.

use crate::mac::DownCommand;

pub(super) const LABEL: &str = "rekey_ind";

/// Confirms the highest minor version both sides speak (1.1).
pub(super) fn handle(minor: u8) -> DownCommand {
    DownCommand::RekeyConf { minor: minor.min(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_at_most_minor_one() {
        for (minor, confirmed) in [(0, 0), (1, 1), (2, 1), (255, 1)] {
            assert_eq!(handle(minor), DownCommand::RekeyConf { minor: confirmed });
        }
    }
}
