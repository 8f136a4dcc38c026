//! `entente roster ...`: write a roster's header and this node's member entry, sign a
//! roster with the node's key, show a roster and whether it is valid.

use std::path::Path;

use anyhow::{Context, Result};
use entente_peering::Roster;

use crate::config::NodeConfig;
use crate::keys;

#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    /// The node's config (its member id, name and key are used).
    #[arg(long, default_value = "node.toml")]
    pub config: std::path::PathBuf,
    /// syndicate, metropole, commune or other.
    #[arg(long, default_value = "syndicate")]
    pub kind: String,
    /// A libp2p address where the node can be reached (repeatable).
    #[arg(long = "address")]
    pub addresses: Vec<String>,
    /// A DevAddr block PREFIX/LENGTH (repeatable).
    #[arg(long = "dev-addr-block")]
    pub dev_addr_blocks: Vec<String>,
    /// A JoinEUI range FIRST-LAST (repeatable).
    #[arg(long = "join-eui-range")]
    pub join_eui_ranges: Vec<String>,
    /// A member on whose network this member's devices may roam (repeatable).
    #[arg(long = "roams-on")]
    pub roams_on: Vec<String>,
}

fn quoted(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| toml::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}

/// The header of a new roster.
pub fn new(federation: &str, rule: &str) -> String {
    format!(
        "# Roster of the {federation} federation. Everything above the first [[signature]]\n\
         # is what members sign; change it and every signature must be given again.\n\
         federation = {}\nversion = 1\nrule = {}\n",
        toml::Value::String(federation.into()),
        toml::Value::String(rule.into())
    )
}

/// This node's `[[member]]` entry, to append to a roster.
pub fn member(a: &MemberArgs) -> Result<String> {
    let cfg = NodeConfig::load(&a.config)?;
    let key = keys::load_node_key(&cfg.key_file())?;
    Ok(format!(
        "\n[[member]]\nid = \"{}\"\nname = {}\nkind = {}\npublic_key = \"{}\"\naddresses = {}\ndev_addr_blocks = {}\njoin_eui_ranges = {}\nroams_on = {}\n",
        cfg.node.member,
        toml::Value::String(cfg.node.name.clone()),
        toml::Value::String(a.kind.clone()),
        hex::encode(key.verifying_key().as_bytes()),
        quoted(&a.addresses),
        quoted(&a.dev_addr_blocks),
        quoted(&a.join_eui_ranges),
        quoted(&a.roams_on),
    ))
}

/// Appends this node's signature to the roster file.
pub fn sign(config: &Path, file: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    let key = keys::load_node_key(&cfg.key_file())?;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let signed = Roster::sign(&text, &cfg.node.member, &key)?;
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, signed)
        .and_then(|_| std::fs::rename(&tmp, file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

/// A readable summary and the validity verdict.
pub fn show(file: &Path) -> Result<(String, bool)> {
    let r = Roster::load(file)?;
    let mut out = format!(
        "federation {} version {} (rule: {:?})\n",
        r.body.federation, r.body.version, r.body.rule
    );
    for m in &r.members {
        out.push_str(&format!(
            "  {} ({:?}) {}\n    peer id {}\n    DevAddr {:?}  JoinEUI {:?}  roams on {:?}\n",
            m.id,
            m.kind,
            m.name,
            m.peer_id,
            r.body
                .members
                .iter()
                .find(|e| e.id == m.id)
                .map(|e| e.dev_addr_blocks.clone())
                .unwrap_or_default(),
            r.body
                .members
                .iter()
                .find(|e| e.id == m.id)
                .map(|e| e.join_eui_ranges.clone())
                .unwrap_or_default(),
            m.roams_on.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        ));
    }
    let valid = match r.verify() {
        Ok(signers) => {
            out.push_str(&format!(
                "valid: signed by {}\n",
                signers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
            true
        }
        Err(e) => {
            out.push_str(&format!("NOT VALID: {e}\n"));
            false
        }
    };
    Ok((out, valid))
}

/// A member for a federation on 127.0.0.1 (the demo and the benches): a node directory
/// from `init`, federated on a free port under `roster`, its `node.toml` passed through
/// `edit`; returns the member's roster entry.
#[allow(clippy::too_many_arguments)]
pub fn loopback_member(
    dir: &std::path::Path,
    member: &entente_model::MemberId,
    name: &str,
    kind: &str,
    dev_addr_block: &str,
    join_eui_ranges: Vec<String>,
    roster: &std::path::Path,
    edit: impl FnOnce(String) -> String,
) -> Result<String> {
    crate::init::run(&crate::init::InitArgs {
        dir,
        member,
        name,
        gateway_port: 0,
        api_port: 0,
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("/ip4/127.0.0.1/tcp/{port}");
    let cfg = dir.join("node.toml");
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        edit(crate::init::federate(&text, dev_addr_block, roster, &address)),
    )?;
    self::member(&MemberArgs {
        config: cfg,
        kind: kind.into(),
        addresses: vec![address],
        dev_addr_blocks: vec![dev_addr_block.into()],
        join_eui_ranges,
        roams_on: vec![],
    })
}
