//! The network server's settings: the `[lns]` section of `node.toml`. Every field has
//! its default here and only here; durations are written for people ("200ms", "24h").

use std::time::Duration;

use chrono::TimeDelta;
use entente_frame::DevAddrBlock;
use entente_model::settings::{self, Invalid};
use serde::{Deserialize, Serialize};

/// The longest the conventions let a node keep readings: 6 years. Here, with the setting
/// it bounds, so node.toml is checked without the network server (and its RocksDB).
pub const MAX_RETENTION: TimeDelta = TimeDelta::days(6 * 366);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LnsConfig {
    /// NetID, 6 hexadecimal digits in the file ("000000" for a private network).
    #[serde(with = "net_id")]
    pub net_id: u32,
    /// The member's DevAddr block, PREFIX/LENGTH ("26011000/20"): OTAA joins draw
    /// addresses from it and ABP devices must use it.
    pub dev_addr_block: DevAddrBlock,
    /// How long copies of one frame from several gateways are gathered.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Dedup window for frames this node only forwards (visited side): shorter than the
    /// home one, because the home node runs its own window and RX1 is 1 s away.
    #[serde(with = "humantime_serde")]
    pub visited_dedup_window: Duration,
    /// Whether the network steers devices' data rates (devices can opt out in their profile).
    pub adr: bool,
    /// How often the network asks a device for its battery and margin.
    #[serde(with = "settings::time_delta")]
    pub dev_status_interval: TimeDelta,
    /// How long the node waits for a gateway's TX_ACK.
    #[serde(with = "humantime_serde")]
    pub tx_ack_timeout: Duration,
    /// How long stored uplinks are kept (at most the conventions' 6 years).
    #[serde(with = "settings::time_delta")]
    pub uplink_retention: TimeDelta,
}

impl Default for LnsConfig {
    fn default() -> Self {
        LnsConfig {
            net_id: 0,
            dev_addr_block: DevAddrBlock {
                prefix: 0x2600_0000,
                len: 7,
            },
            dedup_window: Duration::from_millis(200),
            visited_dedup_window: Duration::from_millis(50),
            adr: true,
            dev_status_interval: TimeDelta::hours(24),
            tx_ack_timeout: Duration::from_millis(800),
            uplink_retention: TimeDelta::days(90),
        }
    }
}

impl LnsConfig {
    /// What serde cannot check: the windows and timeouts are within what the pipeline and
    /// the RX windows allow.
    pub fn validate(&self) -> Result<(), Invalid> {
        let ms = Duration::from_millis;
        settings::duration_between("dedup_window", self.dedup_window, ms(1), ms(5_000))?;
        settings::duration_between(
            "visited_dedup_window",
            self.visited_dedup_window,
            ms(1),
            ms(1_000),
        )?;
        settings::duration_between("tx_ack_timeout", self.tx_ack_timeout, ms(1), ms(10_000))?;
        let interval = self.dev_status_interval.to_std().unwrap_or_default();
        settings::duration_at_least("dev_status_interval", interval, Duration::from_secs(1))?;
        settings::duration_between(
            "uplink_retention",
            self.uplink_retention.to_std().unwrap_or_default(),
            Duration::from_secs(86_400),
            MAX_RETENTION.to_std().unwrap_or_default(),
        )
    }
}

/// A NetID as 6 hexadecimal digits ("000000", "00003C").
mod net_id {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(id: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{id:06X}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub(super) fn parse(text: &str) -> Result<u32, String> {
        let t = text.trim();
        let bad = || format!("{t:?} is not 6 hexadecimal digits");
        if t.len() != 6 {
            return Err(bad());
        }
        u32::from_str_radix(t, 16).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LnsConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_is_the_default() {
        assert_eq!(parse("").unwrap(), LnsConfig::default());
    }

    #[test]
    fn reads_humantime_hex_and_blocks() {
        let c = parse(
            "net_id = \"00003C\"\ndev_addr_block = \"26011000/20\"\ndedup_window = \"150ms\"\n\
             dev_status_interval = \"12h\"\n",
        )
        .unwrap();
        assert_eq!(c.net_id, 0x3C);
        assert_eq!(c.dev_addr_block.to_string(), "26011000/20");
        assert_eq!(c.dedup_window, Duration::from_millis(150));
        assert_eq!(c.dev_status_interval, TimeDelta::hours(12));
        assert_eq!(
            c.visited_dedup_window,
            Duration::from_millis(50),
            "the rest is default"
        );
        c.validate().unwrap();
    }

    #[test]
    fn round_trips_through_toml() {
        let text = toml::to_string(&LnsConfig::default()).unwrap();
        assert!(text.contains("dedup_window = \"200ms\""), "{text}");
        assert!(text.contains("net_id = \"000000\""), "{text}");
        assert_eq!(parse(&text).unwrap(), LnsConfig::default());
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse("dedup_window = \"fast\"\n").unwrap_err();
        assert!(
            e.contains("dedup_window") && e.contains("expected a duration"),
            "{e}"
        );
        let e = parse("net_id = \"3C\"\n").unwrap_err();
        assert!(e.contains("net_id") && e.contains("6 hexadecimal digits"), "{e}");
        let e = parse("dev_addr_block = \"26011000\"\n").unwrap_err();
        assert!(e.contains("dev_addr_block") && e.contains("PREFIX/LENGTH"), "{e}");
        let e = parse("dedup_window_ms = 200\n").unwrap_err();
        assert!(
            e.contains("unknown field") && e.contains("dedup_window_ms"),
            "{e}"
        );
        let e = parse("dedup_window = \"0s\"\n").unwrap().validate().unwrap_err();
        assert_eq!(e.field, "dedup_window");
        assert!(e.reason.contains("between 1ms and 5s"), "{e}");
        let e = parse("dev_status_interval = \"0s\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "dev_status_interval");
    }

    #[test]
    fn net_ids_are_six_hex_digits() {
        assert_eq!(net_id::parse(" 00003c "), Ok(0x3C));
        assert!(net_id::parse("0000zz").is_err());
        assert!(net_id::parse("1000000").is_err());
    }
}
