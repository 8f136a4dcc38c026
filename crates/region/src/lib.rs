//! EU868 regional parameters (LoRaWAN Regional Parameters RP002-1.0.x, EU863-870):
//! data rates, default channels, RX1/RX2, time-on-air and duty-cycle sub-bands.

mod airtime;
mod datarate;
mod eu868;

pub use airtime::{Modulation, time_on_air};
pub use datarate::{Bandwidth, DataRate, SpreadingFactor};
pub use eu868::{Eu868, SubBand};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("unknown data rate {0:?} (expected e.g. \"SF7BW125\")")]
    BadDataRate(String),
    #[error("data rate index DR{0} is not defined for EU868")]
    BadDataRateIndex(u8),
    #[error("frequency {0} Hz is outside the EU863-870 band")]
    OutOfBand(u32),
    #[error("RX1 data rate offset {0} is outside 0..=5")]
    BadRx1DrOffset(u8),
    #[error("{power_dbm} dBm is outside 0..={max_dbm} dBm allowed at {freq_hz} Hz")]
    TxPower {
        freq_hz: u32,
        power_dbm: i8,
        max_dbm: i8,
    },
    #[error("a {len}-byte PHYPayload exceeds the {max} bytes DR{index} carries")]
    TooLong { len: usize, max: usize, index: u8 },
}
