//! `entente device ...`: talks to the running node's API with the operator token.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::config::NodeConfig;
use crate::run::{LISTENING_FILE, Listening};

pub(crate) struct Client {
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) http: reqwest::Client,
}

pub(crate) fn client(config: &Path) -> Result<Client> {
    let cfg = NodeConfig::load(config)?;
    let path = cfg.data_dir().join(LISTENING_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "the node does not seem to run ({} is missing); start it with `entente node`",
            path.display()
        )
    })?;
    let l: Listening =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is unreadable", path.display()))?;
    let token = crate::keys::load_token(&cfg.token_file())?;
    Ok(Client {
        base: format!("http://{}", l.api),
        token,
        http: reqwest::Client::new(),
    })
}

pub(crate) async fn answer(r: reqwest::Response) -> Result<Value> {
    let status = r.status();
    let body: Value = r.json().await.context("the node's answer is not JSON")?;
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("unknown error");
        bail!("{msg} ({status})");
    }
    Ok(body)
}

pub async fn import(config: &Path, file: &Path) -> Result<u64> {
    let c = client(config)?;
    let csv = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let r = c
        .http
        .post(format!("{}/v1/devices/import", c.base))
        .bearer_auth(&c.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .context("cannot reach the node's API")?;
    let v = answer(r)
        .await
        .with_context(|| format!("{} was not imported", file.display()))?;
    Ok(v["imported"].as_u64().unwrap_or(0))
}

pub async fn list(config: &Path) -> Result<Value> {
    get(config, "/v1/devices").await
}

/// A GET of `path` on the running node's API.
pub(crate) async fn get(config: &Path, path: &str) -> Result<Value> {
    let c = client(config)?;
    let r = c
        .http
        .get(format!("{}{path}", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .context("cannot reach the node's API")?;
    answer(r).await
}
