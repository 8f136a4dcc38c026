//! `node.toml`: every field has a default except the member's identity; a bad file fails
//! at start with the file, the field and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use entente_model::MemberId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub lns: LnsSection,
    #[serde(default)]
    pub delivery: DeliverySection,
    #[serde(default)]
    pub federation: FederationSection,
    #[serde(default)]
    pub log: LogSection,
    /// Directory of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub member: MemberId,
    pub name: String,
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "defaults::key_file")]
    pub key_file: PathBuf,
    /// Lets `POST /v1/clock` move this node's clock forward (tests and demos only: a
    /// production node never sets it).
    #[serde(default)]
    pub test_clock: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    pub bind: SocketAddr,
    pub max_datagram_bytes: usize,
    pub online_window_secs: u64,
    pub status_flush_secs: u64,
    pub frame_queue: usize,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 1700)),
            max_datagram_bytes: 32 * 1024,
            online_window_secs: 90,
            status_flush_secs: 30,
            frame_queue: 65_536,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub bind: SocketAddr,
    pub token_file: PathBuf,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: defaults::token_file(),
        }
    }
}

/// The network server: this member's addresses and the uplink pipeline's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LnsSection {
    /// NetID, 6 hexadecimal digits (000000 for a private network).
    pub net_id: String,
    /// The member's DevAddr block, PREFIX/LENGTH (e.g. "26011000/20"); joins draw from it.
    pub dev_addr_block: String,
    /// How long copies of a frame from several gateways are gathered, in milliseconds.
    pub dedup_window_ms: u64,
    /// Whether the network steers devices' data rates (devices can opt out in their profile).
    pub adr: bool,
    /// How often a device is asked its battery and link margin, in hours.
    pub dev_status_interval_hours: u32,
}

impl Default for LnsSection {
    fn default() -> Self {
        Self {
            net_id: "000000".into(),
            dev_addr_block: "26000000/7".into(),
            dedup_window_ms: 200,
            adr: true,
            dev_status_interval_hours: 24,
        }
    }
}

impl LnsSection {
    pub fn net_id(&self) -> Result<u32, String> {
        let t = self.net_id.trim();
        if t.len() != 6 {
            return Err(format!("{t:?} is not 6 hexadecimal digits"));
        }
        u32::from_str_radix(t, 16).map_err(|_| format!("{t:?} is not 6 hexadecimal digits"))
    }

    pub fn to_lns_config(&self) -> Result<entente_lns::LnsConfig, (&'static str, String)> {
        Ok(entente_lns::LnsConfig {
            net_id: self.net_id().map_err(|e| ("lns.net_id", e))?,
            dev_addr_block: self
                .dev_addr_block
                .parse()
                .map_err(|e| ("lns.dev_addr_block", e))?,
            dedup_window: std::time::Duration::from_millis(self.dedup_window_ms),
            adr: self.adr,
            dev_status_interval: chrono::TimeDelta::hours(self.dev_status_interval_hours as i64),
            ..entente_lns::LnsConfig::default()
        })
    }
}

/// The federation: the roster this node admits peers from, where it listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// The signed roster (`federation/<name>/roster.toml`); none: the node runs alone.
    pub roster: Option<PathBuf>,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// Dedup window for frames only forwarded from here (shorter than the home window).
    pub visited_dedup_window_ms: u64,
    /// Frames a peer may forward per second, and its burst, before they are refused.
    pub peer_rate_per_sec: u32,
    pub peer_burst: u32,
    /// Frames kept per unreachable home node (48 h at most).
    pub buffer_max: usize,
    /// The billing policies agreements reference (`policies/`); default: `policies` next
    /// to this file.
    pub policies: Option<PathBuf>,
}

impl Default for FederationSection {
    fn default() -> Self {
        Self {
            roster: None,
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            visited_dedup_window_ms: 50,
            peer_rate_per_sec: 1_000,
            peer_burst: 5_000,
            buffer_max: 100_000,
            policies: None,
        }
    }
}

/// Delivery to applications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// How long an undelivered message is kept (the conventions say 48 h).
    pub retention_hours: u32,
    /// First retry delay; it doubles on each failure up to `backoff_max_secs`.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// A push taking longer than this counts as a timeout and is retried.
    pub http_timeout_ms: u64,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            retention_hours: 48,
            backoff_base_secs: 1,
            backoff_max_secs: 300,
            http_timeout_ms: 10_000,
        }
    }
}

impl DeliverySection {
    pub fn to_config(&self) -> entente_delivery::DeliveryConfig {
        entente_delivery::DeliveryConfig {
            retention: chrono::TimeDelta::hours(self.retention_hours as i64),
            backoff_base: chrono::TimeDelta::seconds(self.backoff_base_secs as i64),
            backoff_max: chrono::TimeDelta::seconds(self.backoff_max_secs as i64),
            http_timeout: std::time::Duration::from_millis(self.http_timeout_ms),
            ..entente_delivery::DeliveryConfig::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A tracing filter: `info`, or `info,entente_gateway=debug`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { level: "info".into() }
    }
}

mod defaults {
    use std::path::PathBuf;
    pub fn data_dir() -> PathBuf {
        "data".into()
    }
    pub fn key_file() -> PathBuf {
        "node.key".into()
    }
    pub fn token_file() -> PathBuf {
        "operator.token".into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}{}: field `{field}`: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Field {
        file: PathBuf,
        line: Option<usize>,
        field: String,
        reason: String,
    },
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let field_err =
            |field: String, reason: String, span: Option<std::ops::Range<usize>>| ConfigError::Field {
                file: path.to_path_buf(),
                line: span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
                field,
                reason,
            };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| field_err("(syntax)".into(), e.message().to_string(), e.span()))?;
        let cfg: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            field_err(field, inner.message().to_string(), inner.span())
        })?;
        cfg.validate()
            .map_err(|(field, reason)| field_err(field.into(), reason, None))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = self.node.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(("node.name", "must be 1 to 200 characters".into()));
        }
        if !(64..=65_507).contains(&self.gateway.max_datagram_bytes) {
            return Err((
                "gateway.max_datagram_bytes",
                "must be between 64 and 65507".into(),
            ));
        }
        if self.gateway.online_window_secs == 0 {
            return Err(("gateway.online_window_secs", "must be at least 1".into()));
        }
        if self.gateway.status_flush_secs == 0 {
            return Err(("gateway.status_flush_secs", "must be at least 1".into()));
        }
        if self.gateway.frame_queue == 0 {
            return Err(("gateway.frame_queue", "must be at least 1".into()));
        }
        self.lns.to_lns_config()?;
        if !(1..=5_000).contains(&self.lns.dedup_window_ms) {
            return Err(("lns.dedup_window_ms", "must be between 1 and 5000".into()));
        }
        for a in &self.federation.listen {
            if a.parse::<libp2p::Multiaddr>().is_err() {
                return Err((
                    "federation.listen",
                    format!("{a:?} is not a multiaddress (e.g. /ip4/0.0.0.0/tcp/4001)"),
                ));
            }
        }
        if !(1..=1_000).contains(&self.federation.visited_dedup_window_ms) {
            return Err((
                "federation.visited_dedup_window_ms",
                "must be between 1 and 1000".into(),
            ));
        }
        if self.federation.peer_rate_per_sec == 0 || self.federation.peer_burst == 0 {
            return Err(("federation.peer_rate_per_sec", "must be at least 1".into()));
        }
        let d = &self.delivery;
        if d.retention_hours == 0 {
            return Err(("delivery.retention_hours", "must be at least 1".into()));
        }
        if d.backoff_base_secs == 0 || d.backoff_base_secs > d.backoff_max_secs {
            return Err((
                "delivery.backoff_base_secs",
                "must be at least 1 and at most delivery.backoff_max_secs".into(),
            ));
        }
        if !(100..=600_000).contains(&d.http_timeout_ms) {
            return Err((
                "delivery.http_timeout_ms",
                "must be between 100 and 600000".into(),
            ));
        }
        if self.log.level.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err((
                "log.level",
                format!("{:?} is not a log filter (try \"info\")", self.log.level),
            ));
        }
        Ok(())
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.node.data_dir)
    }
    pub fn key_file(&self) -> PathBuf {
        self.resolve(&self.node.key_file)
    }
    pub fn token_file(&self) -> PathBuf {
        self.resolve(&self.api.token_file)
    }
    pub fn policies_dir(&self) -> PathBuf {
        self.resolve(
            self.federation
                .policies
                .as_deref()
                .unwrap_or(Path::new("policies")),
        )
    }

    pub fn roster_file(&self) -> Option<PathBuf> {
        self.federation.roster.as_deref().map(|p| self.resolve(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NodeConfig, String> {
        NodeConfig::parse(s, Path::new("/etc/entente/node.toml")).map_err(|e| e.to_string())
    }

    const MIN: &str = "[node]\nmember = \"tours-metropole\"\nname = \"Tours\"\n";

    #[test]
    fn defaults_fill_the_rest() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.gateway.bind.port(), 1700);
        assert_eq!(c.api.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.node.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn errors_name_file_field_and_reason() {
        let e = parse("[node]\nmember = \"Tours Metropole\"\nname = \"x\"\n").unwrap_err();
        assert!(e.starts_with("/etc/entente/node.toml"), "{e}");
        assert!(e.contains("node.member"), "{e}");
        assert!(e.contains("a-z"), "{e}");

        let e = parse(&format!("{MIN}[gateway]\nbind = \"nowhere\"\n")).unwrap_err();
        assert!(e.contains("gateway.bind") && e.contains(":5"), "{e}");

        let e = parse(&format!("{MIN}[api]\nbnd = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(e.contains("unknown field") && e.contains("bnd"), "{e}");

        let e = parse(&format!("{MIN}[gateway]\nmax_datagram_bytes = 3\n")).unwrap_err();
        assert!(
            e.contains("gateway.max_datagram_bytes") && e.contains("between"),
            "{e}"
        );

        let e = parse("[node\nmember=").unwrap_err();
        assert!(e.contains("node.toml:"), "{e}");

        let e = parse("[node]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("member"), "{e}");

        let e = parse(&format!("{MIN}[log]\nlevel = \"info,[[[\"\n")).unwrap_err();
        assert!(e.contains("log.level"), "{e}");
    }
}
