//! The federation's settings: the `[federation]` section of `node.toml`. Every field has
//! its default here and only here; durations are written for people ("5s", "48h").
//! Addresses are `multiaddr`'s type, the one libp2p re-exports (same crate, same
//! version), so `entente_peering` listens on them as they are.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::TimeDelta;
use entente_model::settings::{self, Invalid};
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeeringConfig {
    /// libp2p listen addresses (TCP, Noise, Yamux).
    #[serde(with = "multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Frames a peer may forward per second (and burst) before being refused.
    pub peer_rate_per_sec: u32,
    pub peer_burst: u32,
    /// Frames kept per unreachable home node, and for how long (the conventions: 48 h).
    pub buffer_max: usize,
    #[serde(with = "settings::time_delta")]
    pub buffer_retention: TimeDelta,
    /// A request to a peer without an answer within this is abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Safety margin kept before a downlink's RX window when deciding TOO_LATE.
    #[serde(with = "humantime_serde")]
    pub tx_margin: Duration,
}

impl Default for PeeringConfig {
    fn default() -> Self {
        PeeringConfig {
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
                    .with(Protocol::Tcp(4001)),
            ],
            peer_rate_per_sec: 1_000,
            peer_burst: 5_000,
            buffer_max: 100_000,
            buffer_retention: TimeDelta::hours(48),
            request_timeout: Duration::from_secs(5),
            tx_margin: Duration::from_millis(50),
        }
    }
}

impl PeeringConfig {
    /// What serde cannot check: non-zero rates, a retention within the conventions' 48 h,
    /// timeouts a roamed downlink can still meet.
    pub fn validate(&self) -> Result<(), Invalid> {
        settings::at_least("peer_rate_per_sec", self.peer_rate_per_sec, 1)?;
        settings::at_least("peer_burst", self.peer_burst, 1)?;
        let retention = self.buffer_retention.to_std().unwrap_or_default();
        let hours_48 = Duration::from_secs(48 * 3600);
        settings::duration_between("buffer_retention", retention, Duration::from_secs(1), hours_48)?;
        let ms = Duration::from_millis;
        settings::duration_between("request_timeout", self.request_timeout, ms(10), ms(60_000))?;
        settings::duration_between("tx_margin", self.tx_margin, ms(0), ms(1_000))
    }
}

/// Listen addresses as strings ("/ip4/0.0.0.0/tcp/4001"), each checked when read.
mod multiaddrs {
    use multiaddr::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(|a| a.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    D::Error::custom(format!(
                        "{a:?} is not a multiaddress (e.g. /ip4/0.0.0.0/tcp/4001)"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeeringConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_is_the_default() {
        let c = parse("").unwrap();
        assert_eq!(c, PeeringConfig::default());
        assert_eq!(c.listen[0].to_string(), "/ip4/0.0.0.0/tcp/4001");
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("buffer_retention = \"2days\""), "{text}");
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn reads_addresses_and_humantime() {
        let c = parse(
            "listen = [\"/ip4/127.0.0.1/tcp/4101\"]\nrequest_timeout = \"2s\"\nbuffer_retention = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/tcp/4101");
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.buffer_retention, TimeDelta::hours(1));
        assert_eq!(c.peer_burst, 5_000);
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse("listen = [\"tcp:4001\"]\n").unwrap_err();
        assert!(e.contains("listen") && e.contains("not a multiaddress"), "{e}");
        let e = parse("request_timeout = \"later\"\n").unwrap_err();
        assert!(
            e.contains("request_timeout") && e.contains("expected a duration"),
            "{e}"
        );
        let e = parse("buffer_retention_hours = 48\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("peer_burst = 0\n").unwrap().validate().unwrap_err();
        assert_eq!(e.field, "peer_burst");
        let e = parse("buffer_retention = \"3days\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "buffer_retention");
        assert!(e.reason.contains("between 1s and 2days"), "{e}");
    }
}
