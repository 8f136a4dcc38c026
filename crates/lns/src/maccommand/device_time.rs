//! DeviceTimeReq / DeviceTimeAns (TS001 §5.9): GPS time of the uplink's reception.

use entente_gateway::RxInfo;

use crate::mac::DownCommand;

pub(super) const LABEL: &str = "device_time_req";

/// Milliseconds from the Unix epoch to the GPS one (1980-01-06), less the 18 leap seconds since.
const UNIX_TO_GPS_MS: i64 = 315_964_800_000 - 18_000;

/// The gateway's GPS timestamp when it has one, else the node's reception time.
pub(super) fn handle(best: &RxInfo) -> DownCommand {
    let gps_ms = best
        .gps_time_ms
        .unwrap_or_else(|| (best.received_at.timestamp_millis() - UNIX_TO_GPS_MS).max(0) as u64);
    DownCommand::DeviceTimeAns {
        gps_seconds: (gps_ms / 1000) as u32,
        fraction: ((gps_ms % 1000) * 256 / 1000) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::rx;

    #[test]
    fn gps_time_first_then_reception_time() {
        // (gateway GPS ms, node reception time, seconds, fraction)
        let cases = [
            (Some(1_000_500), "2030-01-01T00:00:00Z", 1000, 128),
            (Some(999), "2030-01-01T00:00:00Z", 0, 255),
            (None, "1980-01-06T00:00:00Z", 18, 0),
            (None, "1980-01-06T00:00:00.250Z", 18, 64),
            (None, "1970-01-01T00:00:00Z", 0, 0),
        ];
        for (gps, at, gps_seconds, fraction) in cases {
            let mut r = rx(1, 0.0, 5);
            r.gps_time_ms = gps;
            r.received_at = at.parse().unwrap();
            assert_eq!(
                handle(&r),
                DownCommand::DeviceTimeAns {
                    gps_seconds,
                    fraction
                },
                "{gps:?} {at}"
            );
        }
    }
}
