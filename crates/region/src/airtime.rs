use std::time::Duration;

use crate::{Bandwidth, DataRate};

/// Modulation parameters that time-on-air depends on beyond the data rate.
#[derive(Debug, Clone, Copy)]
pub struct Modulation {
    pub data_rate: DataRate,
    /// Coding rate denominator minus 4: 1 for 4/5 ... 4 for 4/8.
    pub coding_rate: u8,
    pub preamble_symbols: u16,
    pub explicit_header: bool,
    pub crc: bool,
}

impl Modulation {
    /// LoRaWAN uplink defaults: CR 4/5, 8-symbol preamble, explicit header, CRC on.
    pub fn uplink(data_rate: DataRate) -> Self {
        Self {
            data_rate,
            coding_rate: 1,
            preamble_symbols: 8,
            explicit_header: true,
            crc: true,
        }
    }
    /// Downlinks carry no payload CRC.
    pub fn downlink(data_rate: DataRate) -> Self {
        Self {
            crc: false,
            ..Self::uplink(data_rate)
        }
    }
}

/// Time on air of a PHY payload of `len` bytes (Semtech AN1200.13 formula; FSK as in
/// RP002: preamble 5 bytes, sync word 3, length 1, CRC 2).
pub fn time_on_air(m: Modulation, len: usize) -> Duration {
    match m.data_rate {
        DataRate::Fsk { bitrate } => {
            let bits = (5 + 3 + 1 + len as u64 + 2) * 8;
            Duration::from_nanos(bits * 1_000_000_000 / u64::from(bitrate.max(1)))
        }
        DataRate::Lora { sf, bw } => {
            let sf = f64::from(sf.get());
            let bw_hz = f64::from(bw.hz());
            let t_sym = 2f64.powf(sf) / bw_hz;
            // Low data rate optimisation is mandated when the symbol lasts 16 ms or more.
            let de = if t_sym >= 0.016 && bw == Bandwidth::Khz125 {
                1.0
            } else {
                0.0
            };
            let ih = if m.explicit_header { 0.0 } else { 1.0 };
            let crc = if m.crc { 1.0 } else { 0.0 };
            let num = 8.0 * len as f64 - 4.0 * sf + 28.0 + 16.0 * crc - 20.0 * ih;
            let den = 4.0 * (sf - 2.0 * de);
            let payload_symbols = 8.0 + ((num / den).ceil() * (f64::from(m.coding_rate) + 4.0)).max(0.0);
            let preamble = (f64::from(m.preamble_symbols) + 4.25) * t_sym;
            let seconds = preamble + payload_symbols * t_sym;
            Duration::from_nanos((seconds * 1e9).round() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn matches_semtech_calculator() {
        // Figures from Semtech's LoRa calculator (CR 4/5, 8 symbols preamble, CRC on).
        let sf7 = Modulation::uplink(DataRate::lora(7, Bandwidth::Khz125));
        assert!((ms(time_on_air(sf7, 13)) - 46.336).abs() < 0.01);
        let sf12 = Modulation::uplink(DataRate::lora(12, Bandwidth::Khz125));
        assert!((ms(time_on_air(sf12, 13)) - 1155.072).abs() < 0.01);
        let sf9 = Modulation::uplink(DataRate::lora(9, Bandwidth::Khz125));
        assert!((ms(time_on_air(sf9, 51)) - 328.704).abs() < 0.01);
    }

    #[test]
    fn fsk() {
        let m = Modulation::uplink(DataRate::Fsk { bitrate: 50_000 });
        assert!((ms(time_on_air(m, 13)) - 3.84).abs() < 0.001);
    }
}
