//! After the days: the daily usage statements, the billing period, the committee reviews,
//! and every node's ledger exported and verified offline.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{Datelike, TimeZone, Utc};
use entente_model::MemberId;
use serde_json::{Value, json};

use super::WAIT;
use super::federation::Federation;
use crate::process::NodeProcess;
use crate::scenario::AgreementSpec;

/// Polls `path` on `node` every 100 ms until `done` holds of the answer or `WAIT` ran
/// out; returns whether it held.
async fn poll(node: &NodeProcess, path: &str, done: impl Fn(&Value) -> bool) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&node.get_json(path).await?) {
        if tokio::time::Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}

/// Waits until `node` holds invoice `seq` of `path` accepted (or `WAIT`); returns the
/// invoice as last seen (null if it never was).
async fn accepted_invoice(node: &NodeProcess, path: &str, seq: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let i = node.get_json(path).await?;
        let acc = i["invoices"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["seq"] == seq).cloned());
        if acc.as_ref().is_some_and(|x| x["accepted"] == true) || tokio::time::Instant::now() > deadline {
            return Ok(acc.unwrap_or(Value::Null));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 45 s) until none of the statements `path` lists on `node` awaits an
/// answer; returns the last list.
async fn answered_statements(node: &NodeProcess, path: &str) -> Result<Value> {
    // Answers normally come back within a second; the ledger's 30 s reconciliation
    // makes good any that did not, so wait for one round of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let v = node.get_json(path).await?;
        let done = v["statements"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["status"] != "awaiting") && !s.is_empty());
        if done || tokio::time::Instant::now() > deadline {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Federation {
    /// The last day ends (a day is stated once it is over); the hosts sign each day's
    /// usage statement; the guests answer.
    pub async fn statements(&self) -> Result<Vec<Value>> {
        self.advance(86_400).await?;
        let mut out = Vec::new();
        for a in &self.sc.agreements {
            let h = self.node(self.sc.member_index(&a.host)?)?;
            for day in &self.days_run {
                h.post_json("/v1/ledger/statements", &json!({"agreement": a.id, "day": day}))
                    .await?;
            }
            let v = answered_statements(h, &format!("/v1/ledger/statements?agreement={}", a.id)).await?;
            out.push(
                json!({"agreement": a.id, "host": a.host, "guest": a.guest, "statements": v["statements"]}),
            );
        }
        Ok(out)
    }

    /// The billing period: every node's clock moves to 2 January next year; each host
    /// invoices the year on the objects declared on 1 January; the payer accepts.
    pub async fn billing(&self) -> Result<Vec<Value>> {
        let now = self.now().await?;
        let next = Utc
            .with_ymd_and_hms(now.year() + 1, 1, 2, 9, 0, 0)
            .single()
            .context("calendar")?;
        self.advance((next - now).num_seconds().max(0)).await?;
        let mut out = Vec::new();
        for a in self.sc.agreements.iter().filter(|a| a.billing.is_some()) {
            out.push(self.invoice(a, next.year()).await?);
        }
        Ok(out)
    }

    /// Agreement `a`'s invoice for `year`: issued by the host, accepted by the guest.
    async fn invoice(&self, a: &AgreementSpec, year: i32) -> Result<Value> {
        let h = self.node(self.sc.member_index(&a.host)?)?;
        let g = self.node(self.sc.member_index(&a.guest)?)?;
        let v = h
            .post_json("/v1/ledger/invoices", &json!({"agreement": a.id, "year": year}))
            .await?;
        let seq = v["record"]["seq"].as_u64().unwrap_or(0);
        let path = format!("/v1/ledger/invoices?agreement={}", a.id);
        let arrived = |l: &Value| {
            l["invoices"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["seq"] == seq))
        };
        if !poll(g, &path, arrived).await? {
            bail!("the invoice of {} did not reach {}", a.id, a.guest);
        }
        g.post_json(
            "/v1/ledger/accept",
            &json!({"agreement": a.id, "issuer": a.host, "seq": seq}),
        )
        .await?;
        let accepted = accepted_invoice(h, &path, seq).await?;
        Ok(
            json!({"agreement": a.id, "invoice": v["invoice"], "accepted": accepted["accepted"], "signed_by": accepted["signed_by"]}),
        )
    }

    /// A committee review for each agreement: the guest, whose node knows when its
    /// devices were last heard, prepares it; the host countersigns the same bytes.
    pub async fn reviews(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for a in &self.sc.agreements {
            out.push(self.review(a).await?);
        }
        Ok(out)
    }

    /// Agreement `a`'s review, prepared by the guest, countersigned by the host, its
    /// markdown written under `exports/`.
    async fn review(&self, a: &AgreementSpec) -> Result<Value> {
        let h = self.node(self.sc.member_index(&a.guest)?)?;
        let g = self.node(self.sc.member_index(&a.host)?)?;
        let path = format!("/v1/agreements/{}", a.id);
        let v = h.post_json(&format!("{path}/review"), &json!({})).await?;
        // The host countersigns whether or not the review reached it in time.
        let reached = |r: &Value| r["reviews"].as_array().is_some_and(|r| !r.is_empty());
        poll(g, &format!("{path}/reviews"), reached).await?;
        let c = g.post_json(&format!("{path}/review"), &json!({})).await?;
        let md = self.base.join("exports").join(format!(
            "{}-{}.md",
            a.id,
            v["review"]["quarter"].as_str().unwrap_or("review")
        ));
        std::fs::create_dir_all(self.base.join("exports"))?;
        std::fs::write(&md, c["markdown"].as_str().unwrap_or_default())?;
        Ok(json!({
            "agreement": a.id, "quarter": v["review"]["quarter"],
            "signed_by": c["signed"]["signatures"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            "devices_declared": c["review"]["devices_declared"], "devices_seen": c["review"]["devices_seen"],
            "markdown": md.display().to_string(),
        }))
    }

    /// Each node's ledger exported (JSON and CSV) and checked offline against the roster.
    pub async fn verify_ledgers(&self) -> Result<Vec<Value>> {
        let roster = entente_peering::Roster::load(&self.roster)?;
        let exports = self.base.join("exports");
        std::fs::create_dir_all(&exports)?;
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            out.push(verify_ledger(n, &self.sc.members[m].id, &exports, &roster).await?);
        }
        Ok(out)
    }
}

/// Member `id`'s ledger read from its node `n`, written to `exports` as JSON and CSV,
/// and verified against the keys of `roster`.
async fn verify_ledger(
    n: &NodeProcess,
    id: &MemberId,
    exports: &Path,
    roster: &entente_peering::Roster,
) -> Result<Value> {
    let keys = |m: &MemberId| roster.member(m).map(|m| m.public_key);
    let entries: Vec<entente_ledger::chain::Entry> = serde_json::from_value(n.get_json("/v1/ledger").await?)?;
    let json_path = exports.join(format!("{id}-ledger.json"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&entries)?)?;
    std::fs::write(
        exports.join(format!("{id}-ledger.csv")),
        entente_ledger::chain::to_csv(&entries),
    )?;
    let result = entente_ledger::chain::verify(&entries, &keys);
    Ok(json!({
        "member": id, "records": entries.len(), "export": json_path.display().to_string(),
        "verified": result.is_ok(), "error": result.err().map(|e| e.to_string()),
    }))
}
