//! LinkCheckReq / LinkCheckAns (TS001 §5.2): the device asks how well it is heard.

use std::collections::HashSet;

use entente_model::GatewayEui;
use entente_region::DataRate;

use super::{Reception, demod_floor_db};
use crate::mac::DownCommand;

pub(super) const LABEL: &str = "link_check_req";

/// The best gateway's margin over the demodulation floor, and how many gateways heard it.
pub(super) fn handle(at: &Reception<'_>) -> DownCommand {
    let sf = match at.best.data_rate {
        DataRate::Lora { sf, .. } => sf.get(),
        _ => 7,
    };
    let margin = (at.best.snr - demod_floor_db(sf)).clamp(0.0, 254.0) as u8;
    let gateways: HashSet<GatewayEui> = at.rx.iter().map(|r| r.gateway).collect();
    DownCommand::LinkCheckAns {
        margin,
        gw_count: gateways.len().min(255) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::rx;

    #[test]
    fn margin_and_gateway_count() {
        // (snr, dr, gateways that heard it (one may hear it twice), margin, gw_count)
        let cases: [(f32, u8, &[u8], u8, u8); 5] = [
            (5.0, 5, &[1], 12, 1),          // SF7 floor -7.5 dB
            (-20.0, 0, &[1], 0, 1),         // SF12 at its floor
            (-30.0, 0, &[1], 0, 1),         // under the floor: clamped to 0
            (7.0, 3, &[1, 2, 2, 3], 19, 3), // SF9 floor -12.5 dB; gateway 2 twice
            (300.0, 5, &[1], 254, 1),       // clamped to 254
        ];
        for (snr, dr, gws, margin, gw_count) in cases {
            let all: Vec<_> = gws.iter().map(|g| rx(*g, snr, dr)).collect();
            let at = Reception {
                best: &all[0],
                rx: &all,
                profile: None,
                activation: None,
            };
            assert_eq!(
                handle(&at),
                DownCommand::LinkCheckAns { margin, gw_count },
                "snr {snr} dr {dr}"
            );
        }
    }
}
