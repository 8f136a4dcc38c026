//! The gateway side's settings: the `[gateway]` section of `node.toml`. Every field has
//! its default here and only here; durations are written for people ("90s", "30s").

use std::net::SocketAddr;
use std::time::Duration;

use entente_model::settings::{self, Invalid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// UDP address the gateways' Semtech packet forwarders send to.
    pub bind: SocketAddr,
    /// Larger datagrams are dropped as `oversize`.
    pub max_datagram_bytes: usize,
    /// Frames waiting for the network server; beyond it frames drop as `backpressure`
    /// instead of stalling the receive loop.
    pub frame_queue: usize,
    /// Requested kernel receive buffer, so bursts from many gateways are not lost.
    pub recv_buffer_bytes: usize,
    /// A gateway is online when heard within this window (PULL_DATA comes every 10 s);
    /// the `Registry` applies it.
    #[serde(with = "humantime_serde")]
    pub online_window: Duration,
    /// How often the registry's counters and last-seen times are saved.
    #[serde(with = "humantime_serde")]
    pub status_flush: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 1700)),
            max_datagram_bytes: 32 * 1024,
            frame_queue: 65_536,
            recv_buffer_bytes: 8 * 1024 * 1024,
            online_window: Duration::from_secs(90),
            status_flush: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// What serde cannot check: sizes a UDP datagram can have, non-zero queues and periods.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(64..=65_507).contains(&self.max_datagram_bytes) {
            return Err(Invalid::new("max_datagram_bytes", "must be between 64 and 65507"));
        }
        if !(1..=16_777_216).contains(&self.frame_queue) {
            return Err(Invalid::new("frame_queue", "must be between 1 and 16777216"));
        }
        // The kernel takes an int: a larger value would reach it truncated.
        if !(4096..=i32::MAX as usize).contains(&self.recv_buffer_bytes) {
            return Err(Invalid::new(
                "recv_buffer_bytes",
                "must be between 4096 and 2147483647",
            ));
        }
        let (second, day) = (Duration::from_secs(1), Duration::from_secs(86_400));
        settings::duration_between("online_window", self.online_window, second, day)?;
        settings::duration_between("status_flush", self.status_flush, second, day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_is_the_default() {
        assert_eq!(parse("").unwrap(), ServerConfig::default());
        let text = toml::to_string(&ServerConfig::default()).unwrap();
        assert!(text.contains("online_window = \"1m 30s\""), "{text}");
        assert_eq!(parse(&text).unwrap(), ServerConfig::default());
    }

    #[test]
    fn reads_humantime_and_fills_the_rest() {
        let c = parse("bind = \"127.0.0.1:1701\"\nonline_window = \"2m\"\nstatus_flush = \"5s\"\n").unwrap();
        assert_eq!(c.bind.port(), 1701);
        assert_eq!(c.online_window, Duration::from_secs(120));
        assert_eq!(c.status_flush, Duration::from_secs(5));
        assert_eq!(c.frame_queue, 65_536);
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse("online_window = 90\n").unwrap_err();
        assert!(
            e.contains("online_window") && e.contains("expected a duration"),
            "{e}"
        );
        let e = parse("online_window_secs = 90\n").unwrap_err();
        assert!(
            e.contains("unknown field") && e.contains("online_window_secs"),
            "{e}"
        );
        let e = parse("recv_buffer_bytes = 4294967296\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "recv_buffer_bytes");
        let e = parse("max_datagram_bytes = 3\n").unwrap().validate().unwrap_err();
        assert_eq!(e.field, "max_datagram_bytes");
        let e = parse("status_flush = \"0s\"\n").unwrap().validate().unwrap_err();
        assert_eq!(
            (e.field, e.reason.as_str()),
            ("status_flush", "must be between 1s and 1day")
        );
    }
}
