//! `entente gateway ...`: the gateways of a running node, through its API with the
//! operator token.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::device::{answer, client};

/// Moves a gateway's pinned source (`Some`), or lets its next datagram set it (`None`).
pub async fn pin(config: &Path, eui: &str, source: Option<&str>) -> Result<Value> {
    let c = client(config)?;
    let r = c
        .http
        .put(format!("{}/v1/gateways/{eui}/source", c.base))
        .bearer_auth(&c.token)
        .json(&json!({ "source": source }))
        .send()
        .await
        .context("cannot reach the node's API")?;
    answer(r)
        .await
        .with_context(|| format!("gateway {eui} was not pinned"))
}

pub async fn list(config: &Path) -> Result<Value> {
    crate::device::get(config, "/v1/gateways").await
}
