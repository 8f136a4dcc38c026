//! `entente init`: a new node directory with a commented config, a key, a master key
//! and a token.

use std::path::Path;

use anyhow::{Context, Result, bail};
use entente_model::MemberId;

use crate::{keys, master_key};

pub struct InitArgs<'a> {
    pub dir: &'a Path,
    pub member: &'a MemberId,
    pub name: &'a str,
    pub gateway_port: u16,
    pub api_port: u16,
}

#[derive(Debug)]
pub struct Initialised {
    pub config: std::path::PathBuf,
    pub public_key_hex: String,
}

pub fn run(a: &InitArgs<'_>) -> Result<Initialised> {
    if a.name.trim().is_empty() || a.name.trim().chars().count() > 200 {
        bail!("--name must be 1 to 200 characters");
    }
    std::fs::create_dir_all(a.dir).with_context(|| format!("cannot create {}", a.dir.display()))?;
    let config = a.dir.join("node.toml");
    let key = a.dir.join("node.key");
    let token = a.dir.join("operator.token");
    let master = a.dir.join("master.key");
    let existing: Vec<String> = [&config, &key, &token, &master]
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite {}: this directory already holds a node (its key is its identity in the federation)",
            existing.join(", ")
        );
    }
    let (signing, pem) = keys::generate_node_key()?;
    keys::write_secret(&key, pem.as_bytes())?;
    keys::write_secret(&token, format!("{}\n", keys::generate_token()?).as_bytes())?;
    master_key::create(&master)?;
    std::fs::write(&config, template(a)).with_context(|| format!("cannot write {}", config.display()))?;
    Ok(Initialised {
        config,
        public_key_hex: hex::encode(signing.verifying_key().as_bytes()),
    })
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Sets, in a config written by `init`, what a node needs to federate: its DevAddr block,
/// the roster and one libp2p listen address. The demo, the benches and the tests share it.
pub fn federate(config: &str, dev_addr_block: &str, roster: &Path, listen: &str) -> String {
    config
        .replace(
            "# dev_addr_block = \"26000000/7\"",
            &format!("dev_addr_block = {}", quoted(dev_addr_block)),
        )
        .replace(
            "# roster = \"roster.toml\"",
            &format!("roster = {}", quoted(&roster.display().to_string())),
        )
        .replace(
            "# listen = [\"/ip4/0.0.0.0/tcp/4001\"]",
            &format!("listen = [{}]", quoted(listen)),
        )
}

fn template(a: &InitArgs<'_>) -> String {
    format!(
        r#"# Entente node configuration, written by `entente init`.
# Commented-out lines show the defaults. Relative paths are relative to this file.

[node]
# This node's member in the federation: a lowercase slug (a-z, 0-9, '-').
member = {member}
# The member's name, as shown to partners.
name = {name}
# RocksDB database and runtime files.
data_dir = "data"
# The node's ed25519 identity (PKCS#8 PEM, mode 0600). Never share or copy it.
key_file = "node.key"
# The master key sealing device and session keys in the database (mode 0600). Keep it
# outside the data dir and back it up apart from it; ENTENTE_MASTER_KEY may replace it.
master_key_file = "master.key"
# The signed roster of the federation; without it the node runs alone.
# roster = "roster.toml"
# The billing policies agreements reference (the repository's policies/ directory).
# policies = "policies"

# Durations are written with units: "200ms", "30s", "5m", "48h", "2days".

[gateway]
# UDP address the gateways' Semtech packet forwarders send to.
bind = "0.0.0.0:{gw}"
# Datagrams larger than this are dropped and counted as "oversize".
# max_datagram_bytes = 32768
# Frames waiting for the network server; beyond it they are dropped as "backpressure".
# frame_queue = 65536
# Kernel receive buffer requested for the UDP socket, in bytes.
# recv_buffer_bytes = 8388608
# A gateway is "online" when heard within this window (PULL_DATA comes every 10 s).
# online_window = "90s"
# How often gateway counters and last-seen are saved to the database.
# status_flush = "30s"

[api]
# Management API (HTTP). Requests under /v1 need "Authorization: Bearer <token>".
bind = "127.0.0.1:{api}"
token_file = "operator.token"
# A client must send a request's headers within this (from connecting, or from the end
# of its last response: idle connections are closed), and get its answer within the next.
# header_read_timeout = "10s"
# request_timeout = "60s"
# Serve the API over TLS: a PEM certificate chain and its private key (mode 0600).
# tls_cert = "api.crt"
# tls_key = "api.key"

[lns]
# NetID (6 hex digits; 000000 for a private network).
# net_id = "000000"
# This member's DevAddr block (PREFIX/LENGTH); OTAA joins draw addresses from it and ABP
# devices must use it. The federation roster gives each member its own block.
# dev_addr_block = "26000000/7"
# How long copies of one frame from several gateways are gathered (1ms to 5s).
# dedup_window = "200ms"
# The same for frames this node only forwards to their home node (1ms to 1s).
# visited_dedup_window = "50ms"
# Whether the network steers devices' data rates (ADR).
# adr = true
# How often devices are asked for battery and link margin (DevStatusReq).
# dev_status_interval = "24h"
# How long a gateway has to acknowledge a downlink (TX_ACK).
# tx_ack_timeout = "800ms"
# How long stored uplinks are kept, then purged (1 day to the conventions' 6 years).
# uplink_retention = "90days"

[federation]
# libp2p listen addresses (TCP, Noise, Yamux). The roster is node.roster.
# listen = ["/ip4/0.0.0.0/tcp/4001"]
# Frames a peer may forward per second (and burst) before being refused.
# peer_rate_per_sec = 1000
# peer_burst = 5000
# Frames kept for an unreachable home node, and for how long (48h at most).
# buffer_max = 100000
# buffer_retention = "48h"
# A request to a peer without an answer within this is abandoned.
# request_timeout = "5s"
# Margin kept before a roamed downlink's RX window when deciding it is too late.
# tx_margin = "50ms"

[delivery]
# Undelivered application messages are kept this long, then dropped and counted.
# retention = "48h"
# Failed pushes are retried after backoff_base, then twice that, ... up to backoff_max.
# backoff_base = "1s"
# backoff_max = "5m"
# A push without an answer within this is a timeout, retried (100ms to 10m).
# http_timeout = "10s"
# How often delivery workers look at the clock when nothing wakes them.
# tick = "100ms"
# Where HTTP pushes (and file pushes by URL) may go: scheme, host, port if given (any
# otherwise) and path prefix, e.g. ["https://connector.example.fr/entente"]. Until it
# lists one, no push recipient by URL can be created.
# push_urls = []
# Directories file pushes may write into (or below), e.g. ["/srv/entente/exports"].
# push_directories = []

[log]
# A tracing filter, e.g. "info" or "info,entente_gateway=debug". RUST_LOG overrides it.
# level = "info"
"#,
        member = quoted(a.member.as_str()),
        name = quoted(a.name.trim()),
        gw = a.gateway_port,
        api = a.api_port,
    )
}

/// The template with every `# key = value` line uncommented: every setting written out,
/// each at its default.
#[cfg(test)]
pub(crate) fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(kv)
                if kv
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                kv
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A full template for `member`, for tests.
#[cfg(test)]
pub(crate) fn template_for(member: &MemberId) -> String {
    template(&InitArgs {
        dir: Path::new("."),
        member,
        name: "SMO",
        gateway_port: 1700,
        api_port: 8080,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn writes_a_loadable_config_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let member: MemberId = "smo-vdln".parse().unwrap();
        let args = InitArgs {
            dir: dir.path(),
            member: &member,
            name: "SMO \"Val de Loire\" Numérique",
            gateway_port: 1701,
            api_port: 8081,
        };
        let out = run(&args).unwrap();
        let cfg = NodeConfig::load(&out.config).unwrap();
        assert_eq!(cfg.node.member, member);
        assert_eq!(cfg.node.name, "SMO \"Val de Loire\" Numérique");
        assert_eq!(cfg.gateway.bind.port(), 1701);
        assert_eq!(cfg.api.bind.port(), 8081);
        assert_eq!(cfg.key_file(), dir.path().join("node.key"));
        let key_before = std::fs::read(dir.path().join("node.key")).unwrap();
        let federated = federate(
            &std::fs::read_to_string(&out.config).unwrap(),
            "26012000/20",
            Path::new("/etc/entente/roster.toml"),
            "/ip4/127.0.0.1/tcp/4101",
        );
        let cfg = NodeConfig::parse(&federated, &out.config).unwrap();
        assert_eq!(cfg.lns.dev_addr_block.to_string(), "26012000/20");
        assert_eq!(cfg.node.roster, Some("/etc/entente/roster.toml".into()));
        assert_eq!(
            cfg.federation.listen,
            vec!["/ip4/127.0.0.1/tcp/4101".parse().unwrap()]
        );
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("node.key")).unwrap(), key_before);
    }

    /// Uncommenting every `# key = value` line of the template changes nothing: the
    /// comments show each crate's one default.
    #[test]
    fn the_template_shows_each_crates_defaults() {
        let member: MemberId = "smo-vdln".parse().unwrap();
        let uncommented = uncommented(&template_for(&member));
        let cfg = NodeConfig::parse(&uncommented, Path::new("node.toml")).unwrap();
        assert_eq!(cfg.gateway, entente_gateway::ServerConfig::default());
        assert_eq!(cfg.lns, entente_lns::LnsConfig::default());
        assert_eq!(cfg.federation, entente_peering::PeeringConfig::default());
        assert_eq!(cfg.delivery, entente_delivery::DeliveryConfig::default());
        assert_eq!(cfg.log.level, "info");
        assert_eq!(cfg.policies_dir(), Path::new("policies"));
    }
}
