//! `entente ledger ...`: statements, invoices and the ledger export through the running
//! node's API, and `verify`, which needs no node: an export and the roster's keys.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use entente_ledger::chain::{self, Entry};
use serde_json::{Value, json};

use crate::device::{answer, client};

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Export the ledger (every chain held, or one agreement's) as CSV or JSON.
    Export {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: Option<String>,
        #[arg(long, default_value = "json")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an export offline: chain links, hashes and every signature against the
    /// roster's keys. Names the first bad record and exits 1.
    Verify {
        /// The roster whose members' keys sign the records.
        #[arg(long)]
        roster: PathBuf,
        file: PathBuf,
    },
    /// Sign and send the usage statement of a day (the hosting side).
    Statement {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        /// YYYY-MM-DD
        #[arg(long)]
        day: String,
    },
    /// Statements and where each stands (countersigned, disputed, awaiting).
    Statements {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: Option<String>,
    },
    /// Issue the year's invoice of an agreement this member hosts.
    Invoice {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        #[arg(long)]
        year: i32,
    },
    /// Invoices with their acceptance.
    Invoices {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: Option<String>,
    },
    /// Disputes raised on usage statements.
    Disputes {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: Option<String>,
    },
    /// Countersign a record of the counterparty (accept an invoice or a device count).
    Accept {
        #[arg(long, default_value = "node.toml")]
        config: PathBuf,
        #[arg(long)]
        agreement: String,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        seq: u64,
    },
}

/// Reads an export, CSV or JSON by its first character.
pub fn read_export(file: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON ledger export", file.display()))
    } else {
        chain::from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    }
}

pub fn verify(roster: &Path, file: &Path) -> Result<usize> {
    let roster = entente_peering::Roster::load(roster)?;
    roster.verify().context("the roster itself is not valid")?;
    let entries = read_export(file)?;
    let keys = |m: &entente_model::MemberId| roster.member(m).map(|m| m.public_key);
    chain::verify(&entries, &keys).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
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

fn query(agreement: &Option<String>) -> String {
    agreement
        .as_ref()
        .map(|a| format!("?agreement={}", a.replace(['&', '#', '?'], "")))
        .unwrap_or_default()
}

pub async fn run(cmd: LedgerCmd) -> Result<Option<Value>> {
    use reqwest::Method;
    Ok(Some(match cmd {
        LedgerCmd::Verify { roster, file } => {
            let n = verify(&roster, &file)?;
            json!({ "verified": n, "file": file.display().to_string() })
        }
        LedgerCmd::Export {
            config,
            agreement,
            format,
            out,
        } => {
            if format != "csv" && format != "json" {
                bail!("--format must be csv or json");
            }
            let c = client(&config)?;
            let mut url = format!("{}/v1/ledger?format={format}", c.base);
            if let Some(a) = &agreement {
                url.push_str(&format!("&agreement={}", a.replace(['&', '#', '?'], "")));
            }
            let r = c
                .http
                .get(url)
                .bearer_auth(&c.token)
                .send()
                .await
                .context("cannot reach the node's API")?;
            if !r.status().is_success() {
                bail!("export failed: {}", r.text().await.unwrap_or_default());
            }
            let text = r.text().await?;
            match out {
                Some(p) => {
                    std::fs::write(&p, &text).with_context(|| format!("cannot write {}", p.display()))?;
                    json!({ "written": p.display().to_string() })
                }
                None => {
                    print!("{text}");
                    return Ok(None);
                }
            }
        }
        LedgerCmd::Statement {
            config,
            agreement,
            day,
        } => {
            let day: chrono::NaiveDate = day.parse().context("--day is YYYY-MM-DD")?;
            call(
                &config,
                Method::POST,
                "/ledger/statements",
                Some(json!({"agreement": agreement, "day": day})),
            )
            .await?
        }
        LedgerCmd::Statements { config, agreement } => {
            call(
                &config,
                Method::GET,
                &format!("/ledger/statements{}", query(&agreement)),
                None,
            )
            .await?
        }
        LedgerCmd::Invoice {
            config,
            agreement,
            year,
        } => {
            call(
                &config,
                Method::POST,
                "/ledger/invoices",
                Some(json!({"agreement": agreement, "year": year})),
            )
            .await?
        }
        LedgerCmd::Invoices { config, agreement } => {
            call(
                &config,
                Method::GET,
                &format!("/ledger/invoices{}", query(&agreement)),
                None,
            )
            .await?
        }
        LedgerCmd::Disputes { config, agreement } => {
            call(
                &config,
                Method::GET,
                &format!("/ledger/disputes{}", query(&agreement)),
                None,
            )
            .await?
        }
        LedgerCmd::Accept {
            config,
            agreement,
            issuer,
            seq,
        } => {
            call(
                &config,
                Method::POST,
                "/ledger/accept",
                Some(json!({"agreement": agreement, "issuer": issuer, "seq": seq})),
            )
            .await?
        }
    }))
}
