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
        AccessCmd::Approve {
            config,
            agreement,
            id,
        } => {
            let path = format!(
                "/agreements/{}/access-requests/{}/approve",
                seg(&agreement)?,
                seg(&id)?
            );
            call(&config, Method::POST, &path, None).await
        }
        AccessCmd::Refuse {
            config,
            agreement,
            id,
        } => {
            let path = format!(
                "/agreements/{}/access-requests/{}/refuse",
                seg(&agreement)?,
                seg(&id)?
            );
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
    std::fs::write(&js, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", js.display()))?;
    Ok((md, js, v))
}

/// A transit agreement in which `host` carries `guest`'s declared devices (every flow),
/// for the demo, the benches and the tests; real conventions come from a file.
pub fn transit(
    id: &str,
    host: &entente_model::MemberId,
    guest: &entente_model::MemberId,
    devices: &[entente_model::DevEui],
    messages_per_day: u32,
    start: chrono::DateTime<chrono::Utc>,
) -> entente_agreements::Agreement {
    use entente_agreements::*;
    let all: std::collections::BTreeSet<Flow> = [Flow::Join, Flow::Mac, Flow::UplinkData, Flow::DownlinkData]
        .into_iter()
        .collect();
    Agreement {
        id: id.into(),
        version: 1,
        title: format!("Transit of {guest}'s devices on {host}'s network"),
        host: host.clone(),
        guest: guest.clone(),
        host_role: Role::Host,
        guest_role: Role::Depositor,
        services: Service::ALL.into_iter().collect(),
        users: vec![AuthorisedUser {
            name: format!("{guest} devices"),
            public_service_mission: "public service networks".into(),
            duration: "10 years".into(),
            coverage: vec![Coverage::Outdoor],
            devices_volume: devices.len() as u32,
            devices_location: "border communes".into(),
            flows: all.clone(),
            messages_per_day,
            devices: devices.iter().copied().collect(),
            class: Default::default(),
        }],
        flows: all,
        share_signal_quality: true,
        share_gateway_location: false,
        host_data_use_consent: false,
        sla: Sla::Targets {
            day_pct: 90.0,
            fortnight_pct: 95.0,
        },
        fair_use: FairUse {
            max_messages_per_device_per_day: None,
            max_bytes_per_device_per_day: None,
            no_real_time: false,
            no_personal_data: false,
        },
        billing: Billing::Free,
        start,
        duration_months: 120,
        renewal: Renewal::Fixed,
        notice_months: 12,
        count_tolerance_per_mille: 10,
        max_copies_per_frame: 3,
        when_home_unreachable: WhenHomeUnreachable::Buffer,
        substantial_change_pct: 20,
        admin_accounts: vec![],
    }
}

/// The guest proposes over its API, the proposal reaches the host over the federation,
/// the host approves, and both nodes see it in force.
pub async fn establish(
    guest: &crate::process::NodeProcess,
    host: &crate::process::NodeProcess,
    a: &entente_agreements::Agreement,
) -> Result<()> {
    guest
        .post_json("/v1/agreements", &serde_json::to_value(a)?)
        .await?;
    let path = format!("/v1/agreements/{}", a.id);
    wait_for(host, &path, |v| v["state"] == "proposed").await?;
    host.post_json(&format!("{path}/approve"), &json!({})).await?;
    wait_for(host, &path, |v| v["in_force"] == true).await?;
    wait_for(guest, &path, |v| v["in_force"] == true).await?;
    Ok(())
}

/// Polls `path` on `node` until `ok` holds (10 s at most).
pub async fn wait_for(
    node: &crate::process::NodeProcess,
    path: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(v) = node.get_json(path).await {
            if ok(&v) {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} {path}: still {v}", node.listening.member);
            }
        } else if tokio::time::Instant::now() > deadline {
            bail!("{} {path}: not found", node.listening.member);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
