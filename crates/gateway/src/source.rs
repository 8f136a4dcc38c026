//! Where a gateway's datagrams may come from. The Semtech UDP protocol authenticates
//! nothing: the gateway EUI inside a datagram is a claim anyone can make. So each
//! registered gateway is pinned to a source, an address or a network, set at registration
//! or learned from its first datagram; datagrams for its EUI from anywhere else are
//! dropped and counted (`source_mismatch`), and only the operator moves the pin.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use entente_model::GatewayEui;
use entente_store::Table;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An address (any port: NAT may move it) or a network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AllowedSource {
    Address(IpAddr),
    Network(IpNet),
}

impl AllowedSource {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match self {
            AllowedSource::Address(a) => a.to_canonical() == ip,
            AllowedSource::Network(n) => n.contains(&ip),
        }
    }
}

impl FromStr for AllowedSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('/') {
            s.parse::<IpNet>()
                .map(|n| AllowedSource::Network(n.trunc()))
                .map_err(|_| format!("{s:?} is not a network such as 192.0.2.0/24"))
        } else {
            s.parse::<IpAddr>()
                .map(AllowedSource::Address)
                .map_err(|_| format!("{s:?} is not an IP address or a network"))
        }
    }
}

impl TryFrom<String> for AllowedSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedSource::Address(a) => a.fmt(f),
            AllowedSource::Network(n) => n.fmt(f),
        }
    }
}

impl From<AllowedSource> for String {
    fn from(s: AllowedSource) -> String {
        s.to_string()
    }
}

/// How a pin was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinnedBy {
    /// At registration or by `entente gateway pin`.
    Operator,
    /// From the gateway's first datagram after registration or after an unpin.
    FirstContact,
}

/// A gateway's pinned source. Persisted in table `gateway_sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePin {
    pub source: AllowedSource,
    pub by: PinnedBy,
    pub at: DateTime<Utc>,
}

pub(crate) struct SourcesTable;
impl Table for SourcesTable {
    const NAME: &'static str = "gateway_sources";
    type Key = GatewayEui;
    type Value = SourcePin;
}

/// What the server does with a datagram, by its source.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SourceCheck {
    Allowed,
    /// The gateway had no pin: this datagram's address becomes it.
    Learned(SourcePin),
    Refused,
}

/// Checks `ip` against the pin, learning one when there is none.
pub(crate) fn check(pin: &mut Option<SourcePin>, ip: IpAddr, now: DateTime<Utc>) -> SourceCheck {
    match pin {
        Some(p) if p.source.allows(ip) => SourceCheck::Allowed,
        Some(_) => SourceCheck::Refused,
        None => {
            let learned = SourcePin {
                source: AllowedSource::Address(ip.to_canonical()),
                by: PinnedBy::FirstContact,
                at: now,
            };
            *pin = Some(learned);
            SourceCheck::Learned(learned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_parse_and_allow() {
        // (source, address, allowed)
        let cases = [
            ("192.0.2.10", "192.0.2.10", true),
            ("192.0.2.10", "192.0.2.11", false),
            ("192.0.2.10", "::ffff:192.0.2.10", true),
            ("192.0.2.0/24", "192.0.2.200", true),
            ("192.0.2.77/24", "192.0.2.1", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("2001:db8::/32", "2001:db8::1", true),
            ("2001:db8::/32", "192.0.2.1", false),
        ];
        for (source, addr, allowed) in cases {
            let s: AllowedSource = source.parse().unwrap();
            assert_eq!(s.allows(ip(addr)), allowed, "{source} {addr}");
        }
        for bad in ["", "gateway", "192.0.2.0/33", "300.1.1.1", "192.0.2.1/"] {
            assert!(bad.parse::<AllowedSource>().is_err(), "{bad}");
        }
        assert_eq!(
            "192.0.2.77/24".parse::<AllowedSource>().unwrap().to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn the_first_source_is_pinned_and_others_refused() {
        let now = Utc::now();
        let mut pin = None;
        let learned = check(&mut pin, ip("198.51.100.7"), now);
        assert!(matches!(learned, SourceCheck::Learned(p) if p.by == PinnedBy::FirstContact));
        assert_eq!(check(&mut pin, ip("198.51.100.7"), now), SourceCheck::Allowed);
        assert_eq!(check(&mut pin, ip("203.0.113.9"), now), SourceCheck::Refused);
    }
}
