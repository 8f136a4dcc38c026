use std::time::Duration;

use crate::{Bandwidth, DataRate, RegionError};

/// An ETSI EN 300 220 sub-band with its duty-cycle limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubBand {
    pub name: &'static str,
    pub min_hz: u32,
    pub max_hz: u32,
    /// Duty cycle in permille (10 = 1 %).
    pub duty_permille: u32,
}

impl SubBand {
    /// Longest time on air allowed in a sliding hour.
    pub fn budget_per_hour(&self) -> Duration {
        Duration::from_millis(3_600_000 * u64::from(self.duty_permille) / 1000)
    }
}

/// EU863-870 channel plan.
pub struct Eu868;

const SUB_BANDS: [SubBand; 6] = [
    SubBand {
        name: "g",
        min_hz: 863_000_000,
        max_hz: 865_000_000,
        duty_permille: 1,
    },
    SubBand {
        name: "g",
        min_hz: 865_000_000,
        max_hz: 868_000_000,
        duty_permille: 10,
    },
    SubBand {
        name: "g1",
        min_hz: 868_000_000,
        max_hz: 868_600_000,
        duty_permille: 10,
    },
    SubBand {
        name: "g2",
        min_hz: 868_700_000,
        max_hz: 869_200_000,
        duty_permille: 1,
    },
    SubBand {
        name: "g3",
        min_hz: 869_400_000,
        max_hz: 869_650_000,
        duty_permille: 100,
    },
    SubBand {
        name: "g4",
        min_hz: 869_700_000,
        max_hz: 870_000_000,
        duty_permille: 10,
    },
];

const DATA_RATES: [DataRate; 8] = [
    DataRate::lora(12, Bandwidth::Khz125),
    DataRate::lora(11, Bandwidth::Khz125),
    DataRate::lora(10, Bandwidth::Khz125),
    DataRate::lora(9, Bandwidth::Khz125),
    DataRate::lora(8, Bandwidth::Khz125),
    DataRate::lora(7, Bandwidth::Khz125),
    DataRate::lora(7, Bandwidth::Khz250),
    DataRate::Fsk { bitrate: 50_000 },
];

/// Maximum MACPayload size M per data rate (RP002, repeater-compatible N is M - 8).
const MAX_MAC_PAYLOAD: [usize; 8] = [59, 59, 59, 123, 250, 250, 250, 250];

impl Eu868 {
    /// The three join channels every EU868 device knows.
    pub const DEFAULT_CHANNELS_HZ: [u32; 3] = [868_100_000, 868_300_000, 868_500_000];
    pub const RX2_FREQUENCY_HZ: u32 = 869_525_000;
    pub const RX2_DATA_RATE: u8 = 0;
    pub const RECEIVE_DELAY1: Duration = Duration::from_secs(1);
    pub const RECEIVE_DELAY2: Duration = Duration::from_secs(2);
    pub const JOIN_ACCEPT_DELAY1: Duration = Duration::from_secs(5);
    pub const JOIN_ACCEPT_DELAY2: Duration = Duration::from_secs(6);
    /// Gateway transmit power in the 869.4–869.65 MHz sub-band (27 dBm ERP allowed).
    pub const RX2_TX_POWER_DBM: i8 = 27;
    pub const DEFAULT_TX_POWER_DBM: i8 = 14;

    pub fn data_rate(index: u8) -> Result<DataRate, RegionError> {
        DATA_RATES
            .get(usize::from(index))
            .copied()
            .ok_or(RegionError::BadDataRateIndex(index))
    }

    pub fn data_rate_index(dr: DataRate) -> Option<u8> {
        DATA_RATES.iter().position(|d| *d == dr).map(|i| i as u8)
    }

    pub fn max_mac_payload(index: u8) -> Result<usize, RegionError> {
        MAX_MAC_PAYLOAD
            .get(usize::from(index))
            .copied()
            .ok_or(RegionError::BadDataRateIndex(index))
    }

    /// RX1 data rate for an uplink data rate and the RX1DROffset (RP002 table "EU863-870
    /// RX1 DataRate"): the uplink data rate lowered by the offset, never below DR0.
    pub fn rx1_data_rate(uplink: u8, offset: u8) -> Result<u8, RegionError> {
        if offset > 5 {
            return Err(RegionError::BadRx1DrOffset(offset));
        }
        if usize::from(uplink) >= DATA_RATES.len() {
            return Err(RegionError::BadDataRateIndex(uplink));
        }
        Ok(uplink.saturating_sub(offset))
    }

    /// Whether a downlink may go on the air as asked: a frequency in a sub-band, an EU868
    /// data rate, a power within the sub-band's limit (27 dBm in g3, RX2's, 14 dBm
    /// elsewhere) and a PHYPayload the data rate carries (MHDR + MACPayload + MIC).
    pub fn check_downlink(
        freq_hz: u32,
        dr: DataRate,
        power_dbm: i8,
        phy_len: usize,
    ) -> Result<(), RegionError> {
        let band = Self::sub_band(freq_hz)?;
        let index = Self::data_rate_index(dr).ok_or_else(|| RegionError::BadDataRate(format!("{dr:?}")))?;
        let max_dbm = if band.name == "g3" {
            Self::RX2_TX_POWER_DBM
        } else {
            Self::DEFAULT_TX_POWER_DBM
        };
        if !(0..=max_dbm).contains(&power_dbm) {
            return Err(RegionError::TxPower {
                freq_hz,
                power_dbm,
                max_dbm,
            });
        }
        let max = Self::max_mac_payload(index)? + 5;
        if phy_len > max {
            return Err(RegionError::TooLong {
                len: phy_len,
                max,
                index,
            });
        }
        Ok(())
    }

    pub fn sub_band(freq_hz: u32) -> Result<SubBand, RegionError> {
        SUB_BANDS
            .iter()
            .find(|b| freq_hz >= b.min_hz && freq_hz < b.max_hz)
            .copied()
            .ok_or(RegionError::OutOfBand(freq_hz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downlinks_outside_the_plan_are_refused() {
        let sf = |n| DataRate::lora(n, Bandwidth::Khz125);
        let cases: [(&str, u32, DataRate, i8, usize, bool); 8] = [
            ("RX1 on a default channel", 868_100_000, sf(7), 14, 250 + 5, true),
            ("RX2, 27 dBm", Eu868::RX2_FREQUENCY_HZ, sf(12), 27, 64, true),
            ("out of band", 870_500_000, sf(7), 14, 20, false),
            ("between sub-bands", 868_650_000, sf(7), 14, 20, false),
            ("27 dBm outside g3", 868_100_000, sf(7), 27, 20, false),
            ("negative power", 868_100_000, sf(7), -3, 20, false),
            ("too long for SF12", 868_100_000, sf(12), 14, 59 + 6, false),
            ("SF6 is not EU868", 868_100_000, sf(6), 14, 20, false),
        ];
        for (what, f, dr, p, len, ok) in cases {
            assert_eq!(Eu868::check_downlink(f, dr, p, len).is_ok(), ok, "{what}");
        }
    }

    #[test]
    fn rx1_offsets() {
        assert_eq!(Eu868::rx1_data_rate(5, 0).unwrap(), 5);
        assert_eq!(Eu868::rx1_data_rate(5, 2).unwrap(), 3);
        assert_eq!(Eu868::rx1_data_rate(1, 5).unwrap(), 0);
        assert!(Eu868::rx1_data_rate(5, 6).is_err());
        assert!(Eu868::rx1_data_rate(8, 0).is_err());
    }

    #[test]
    fn sub_bands() {
        assert_eq!(Eu868::sub_band(868_100_000).unwrap().duty_permille, 10);
        assert_eq!(Eu868::sub_band(869_525_000).unwrap().name, "g3");
        assert_eq!(
            Eu868::sub_band(869_525_000).unwrap().budget_per_hour(),
            Duration::from_secs(360)
        );
        assert!(Eu868::sub_band(915_000_000).is_err());
        assert!(Eu868::sub_band(869_300_000).is_err());
    }

    #[test]
    fn data_rates() {
        assert_eq!(Eu868::data_rate(0).unwrap().to_string(), "SF12BW125");
        assert_eq!(Eu868::data_rate_index("SF7BW250".parse().unwrap()), Some(6));
        assert!(Eu868::data_rate(8).is_err());
        assert_eq!(Eu868::max_mac_payload(0).unwrap(), 59);
    }
}
