//! `entente agreement ...`, `entente access-request ...` and `entente committee review`:
//! drive the running node's agreements through its API. The node signs with its member
//! key; the CLI never handles keys.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::device::{answer, client};

#[derive(Subcommand)]
pub enum AgreementCmd {
    /// Propose a convention (a TOML or JSON file of the agreement model), signed by this
    /// member; the counterparty receives it over the federation and has a month to answer.
    Propose {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        file: PathBuf,
    },
    /// List the agreements this member is party to.
    List {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
    },
    /// Show one agreement: state, deadlines, signatures, history, the version in force.
    Show {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
        /// Print the signed documents exactly as held instead.
        #[arg(long)]
        document: bool,
    },
    /// Countersign what waits for this member: the proposal or the pending amendment.
    Approve {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
    },
    /// Refuse the proposal or the pending amendment.
    Reject {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
    },
    /// Propose the next version (a full agreement file); the other party approves it.
    Amend {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
        file: PathBuf,
    },
    /// Give notice: the agreement stays in force until the notice runs out.
    Terminate {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
    },
    Suspend {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
    },
    Resume {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AccessCmd {
    /// File an access request (the guest): a TOML or JSON file of an authorised user,
    /// with every field of the convention's request form.
    File {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        /// An id for the request, unique in the agreement.
        #[arg(long)]
        id: String,
        file: PathBuf,
    },
    /// Approve an access request (the host).
    Approve {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        id: String,
    },
    /// Refuse an access request (the host).
    Refuse {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        id: String,
    },
}

/// A TOML or JSON document, by extension (TOML otherwise).
pub fn read_document(file: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    } else {
        let v: toml::Value =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
        serde_json::to_value(v).context("cannot convert the TOML document")
    }
}

async fn call(config: &Path, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    let c = client(config)?;
    let mut r = c
        .http
        .request(method, format!("{}/v1{path}", c.base))
        .bearer_auth(&c.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    answer(r.send().await.context("cannot reach the node's API")?).await
}

fn seg(id: &str) -> Result<&str> {
    if id.is_empty() || id.contains(['/', '?', '#']) {
        bail!("{id:?} is not an agreement or request id");
    }
    Ok(id)
}

pub async fn agreement(cmd: AgreementCmd) -> Result<Value> {
    use reqwest::Method;
    match cmd {
        AgreementCmd::Propose { config, file } => {
            call(&config, Method::POST, "/agreements", Some(read_document(&file)?)).await
        }
        AgreementCmd::List { config } => call(&config, Method::GET, "/agreements", None).await,
        AgreementCmd::Show { config, id, document } => {
            let path = if document {
                format!("/agreements/{}/document", seg(&id)?)
            } else {
                format!("/agreements/{}", seg(&id)?)
            };
            call(&config, Method::GET, &path, None).await
        }
        AgreementCmd::Amend { config, id, file } => {
            let path = format!("/agreements/{}/amend", seg(&id)?);
            call(&config, Method::POST, &path, Some(read_document(&file)?)).await
        }
        AgreementCmd::Approve { config, id } => action(&config, &id, "approve").await,
        AgreementCmd::Reject { config, id } => action(&config, &id, "reject").await,
        AgreementCmd::Terminate { config, id } => action(&config, &id, "terminate").await,
        AgreementCmd::Suspend { config, id } => action(&config, &id, "suspend").await,
        AgreementCmd::Resume { config, id } => action(&config, &id, "resume").await,
    }
}

async fn action(config: &Path, id: &str, what: &str) -> Result<Value> {
    let path = format!("/agreements/{}/{what}", seg(id)?);
    call(config, reqwest::Method::POST, &path, None).await
}

pub async fn access(cmd: AccessCmd) -> Result<Value> {
    use reqwest::Method;
    match cmd {
        AccessCmd::File {
            config,
            agreement,
            id,
            file,
        } => {
            let path = format!("/agreements/{}/access-requests", seg(&agreement)?);
            let body = json!({ "id": id, "user": read_document(&file)? });
            call(&config, Method::POST, &path, Some(body)).await
        }
        AccessCmd::Approve { config, agreement, id } => {
            let path = format!("/agreements/{}/access-requests/{}/approve", seg(&agreement)?, seg(&id)?);
            call(&config, Method::POST, &path, None).await
        }
        AccessCmd::Refuse { config, agreement, id } => {
            let path = format!("/agreements/{}/access-requests/{}/refuse", seg(&agreement)?, seg(&id)?);
            call(&config, Method::POST, &path, None).await
        }
    }
}

/// Prepares (or countersigns) the quarter's review and writes `ID-QUARTER.md` and
/// `ID-QUARTER.json` (the signed review) into `out`. Returns the two paths.
pub async fn committee_review(config: &Path, id: &str, out: &Path) -> Result<(PathBuf, PathBuf, Value)> {
    let path = format!("/agreements/{}/review", seg(id)?);
    let v = call(config, reqwest::Method::POST, &path, None).await?;
    let quarter = v["review"]["quarter"].as_str().unwrap_or("review").to_string();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let md = out.join(format!("{id}-{quarter}.md"));
    let js = out.join(format!("{id}-{quarter}.json"));
    std::fs::write(&md, v["markdown"].as_str().unwrap_or_default())
        .with_context(|| format!("cannot write {}", md.display()))?;
    let doc = json!({ "review": v["review"], "signed": v["signed"] });
    std::fs::write(&js, serde_json::to_vec_pretty(&doc)?).with_context(|| format!("cannot write {}", js.display()))?;
    Ok((md, js, v))
}
