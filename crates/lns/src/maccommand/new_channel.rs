//! NewChannelReq / NewChannelAns (TS001 §5.6): the EU868 extra channels of the CFList,
//! for ABP devices provisioned without them.

use crate::join::EU868_CFLIST_HZ;
use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "new_channel_ans";

/// Channels 3..7, every time until the device accepts them.
pub(super) fn request(s: &Session) -> Vec<DownCommand> {
    if s.channels_configured {
        return Vec::new();
    }
    EU868_CFLIST_HZ
        .iter()
        .enumerate()
        .map(|(i, hz)| DownCommand::NewChannelReq {
            ch_index: 3 + i as u8,
            frequency_hz: *hz,
            min_dr: 0,
            max_dr: 5,
        })
        .collect()
}

/// Data rate range and frequency both accepted: the channels are known.
pub(super) fn handle(s: &mut Session, status: u8) {
    if status & 0x03 == 0x03 {
        s.channels_configured = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    #[test]
    fn five_channels_until_accepted() {
        // (status of the answer, configured afterwards)
        for (status, configured) in [
            (0x03, true),
            (0x07, true),
            (0x01, false),
            (0x02, false),
            (0x00, false),
        ] {
            let mut s = session();
            s.channels_configured = false;
            let asked = request(&s);
            assert_eq!(asked.len(), 5);
            assert_eq!(
                asked[0],
                DownCommand::NewChannelReq {
                    ch_index: 3,
                    frequency_hz: 867_100_000,
                    min_dr: 0,
                    max_dr: 5
                }
            );
            handle(&mut s, status);
            assert_eq!(s.channels_configured, configured, "{status:#x}");
            assert_eq!(request(&s).is_empty(), configured);
        }
    }
}
