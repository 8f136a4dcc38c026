//! DevStatusReq / DevStatusAns (TS001 §5.5): battery and demodulation margin.

use chrono::{DateTime, TimeDelta, Utc};

use crate::mac::DownCommand;
use crate::session::Session;

pub(super) const LABEL: &str = "dev_status_ans";

/// Asks once per `interval`, and at the first uplink of a session.
pub(super) fn request(s: &mut Session, now: DateTime<Utc>, interval: TimeDelta) -> Option<DownCommand> {
    if s.last_dev_status_req.is_some_and(|t| now - t < interval) {
        return None;
    }
    s.last_dev_status_req = Some(now);
    Some(DownCommand::DevStatusReq)
}

pub(super) fn handle(s: &mut Session, battery: u8, margin: i8) {
    s.battery = Some(battery);
    s.margin = Some(margin);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::session;

    #[test]
    fn asks_once_per_interval() {
        let day = TimeDelta::hours(24);
        // (hours since the last request, None: never asked; asks)
        let cases = [
            (None, true),
            (Some(0), false),
            (Some(23), false),
            (Some(24), true),
            (Some(48), true),
        ];
        for (since, asks) in cases {
            let mut s = session();
            let now = s.created_at;
            s.last_dev_status_req = since.map(|h| now - TimeDelta::hours(h));
            let before = s.last_dev_status_req;
            assert_eq!(request(&mut s, now, day).is_some(), asks, "{since:?}");
            assert_eq!(s.last_dev_status_req, if asks { Some(now) } else { before });
        }
    }

    #[test]
    fn the_answer_is_kept() {
        for (battery, margin) in [(0, -32), (254, 31), (255, 0)] {
            let mut s = session();
            handle(&mut s, battery, margin);
            assert_eq!((s.battery, s.margin), (Some(battery), Some(margin)));
        }
    }
}
