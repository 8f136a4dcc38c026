//! The joint technical committee's quarterly access-rights review (001 art. 7): what the
//! agreement authorises, what was declared and what was seen, who administers what, what
//! changed since the last review and what waits for an answer. Committee members of both
//! parties sign the same bytes; the signed review is kept and replicated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::{DevEui, MemberId};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{AccessState, Record};
use crate::model::{AdminAccount, Service};
use crate::sig::{sign_hex, verify_hex};
use crate::signing::SignError;

pub const REVIEW_DOMAIN: &[u8] = b"entente/review/v1\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewedUser {
    pub name: String,
    pub public_service_mission: String,
    pub duration: String,
    pub devices_declared: usize,
    pub devices_seen: usize,
    pub messages_per_day: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingItem {
    pub what: String,
    pub filed_at: DateTime<Utc>,
    pub answer_due: DateTime<Utc>,
    pub overdue: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub agreement: String,
    pub version: u32,
    pub quarter: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub prepared_by: MemberId,
    pub prepared_at: DateTime<Utc>,
    pub host: MemberId,
    pub guest: MemberId,
    pub state: String,
    pub services: Vec<Service>,
    pub users: Vec<ReviewedUser>,
    pub devices_declared: usize,
    pub devices_seen: usize,
    pub declared_not_seen: Vec<DevEui>,
    pub admin_accounts: Vec<AdminAccount>,
    pub changes_since_last_review: Vec<(DateTime<Utc>, String)>,
    pub pending: Vec<PendingItem>,
}

/// The calendar quarter containing `t`: its label, start and end.
pub fn quarter_of(t: DateTime<Utc>) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let q = t.month0() / 3;
    let start_month = q * 3 + 1;
    let start = Utc
        .with_ymd_and_hms(t.year(), start_month, 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    let end = if q == 3 {
        Utc.with_ymd_and_hms(t.year() + 1, 1, 1, 0, 0, 0).single()
    } else {
        Utc.with_ymd_and_hms(t.year(), start_month + 3, 1, 0, 0, 0)
            .single()
    }
    .unwrap_or(t);
    (format!("{}-Q{}", t.year(), q + 1), start, end)
}

impl Review {
    /// Builds the review of the quarter containing `now`. `seen` says when a device was
    /// last heard; `last_review` is when the previous review was prepared.
    pub fn prepare(
        r: &Record,
        by: &MemberId,
        now: DateTime<Utc>,
        seen: &dyn Fn(&DevEui) -> Option<DateTime<Utc>>,
        last_review: Option<DateTime<Utc>>,
    ) -> Result<Review, crate::LifecycleError> {
        let a = r.effective()?;
        let (quarter, start, end) = quarter_of(now);
        let heard = |d: &DevEui| seen(d).is_some_and(|t| t >= start && t < end);
        let users = a
            .users
            .iter()
            .map(|u| ReviewedUser {
                name: u.name.clone(),
                public_service_mission: u.public_service_mission.clone(),
                duration: u.duration.clone(),
                devices_declared: u.devices.len(),
                devices_seen: u.devices.iter().filter(|d| heard(d)).count(),
                messages_per_day: u.messages_per_day,
            })
            .collect();
        let declared: BTreeSet<DevEui> = a.declared_devices();
        let declared_not_seen: Vec<DevEui> = declared.iter().filter(|d| !heard(d)).copied().collect();
        let mut pending: Vec<PendingItem> = r
            .access_requests
            .iter()
            .filter(|q| q.state == AccessState::Pending)
            .map(|q| PendingItem {
                what: format!("access request {} for {}", q.id, q.user.name),
                filed_at: q.filed_at,
                answer_due: q.answer_due,
                overdue: now > q.answer_due,
            })
            .collect();
        if let Some(p) = &r.pending_amendment {
            pending.push(PendingItem {
                what: format!("amendment to version {} proposed by {}", p.version, p.proposer),
                filed_at: p.proposed_at,
                answer_due: p.answer_due,
                overdue: now > p.answer_due,
            });
        }
        if r.state == crate::State::Proposed {
            pending.push(PendingItem {
                what: format!("the agreement itself, proposed by {}", r.proposer),
                filed_at: r.proposed_at,
                answer_due: r.answer_due,
                overdue: r.overdue(now),
            });
        }
        Ok(Review {
            agreement: a.id.clone(),
            version: a.version,
            quarter,
            period_start: start,
            period_end: end,
            prepared_by: by.clone(),
            prepared_at: now,
            host: a.host.clone(),
            guest: a.guest.clone(),
            state: format!("{:?}", r.state).to_lowercase(),
            services: a.services.iter().copied().collect(),
            users,
            devices_declared: declared.len(),
            devices_seen: declared.len() - declared_not_seen.len(),
            declared_not_seen,
            admin_accounts: a.admin_accounts.clone(),
            changes_since_last_review: r
                .history
                .iter()
                .filter(|(t, _)| last_review.is_none_or(|l| *t > l))
                .cloned()
                .collect(),
            pending,
        })
    }

    pub fn markdown(&self, signatures: &[MemberId]) -> String {
        let mut m = String::new();
        let _ = writeln!(
            m,
            "# Access-rights review {} — agreement {} (version {})\n",
            self.quarter, self.agreement, self.version
        );
        let _ = writeln!(
            m,
            "Period {} to {}; prepared by {} on {}; state **{}**.\n",
            self.period_start.date_naive(),
            self.period_end.date_naive(),
            self.prepared_by,
            self.prepared_at.format("%Y-%m-%d %H:%M UTC"),
            self.state
        );
        let _ = writeln!(
            m,
            "## Parties\n\n- Host: {}\n- Guest: {}\n",
            self.host, self.guest
        );
        let _ = writeln!(m, "## Services\n");
        for s in &self.services {
            let _ = writeln!(m, "- {s:?}");
        }
        let _ = writeln!(
            m,
            "\n## Authorised users\n\n| User | Mission | Duration | Declared | Seen this quarter | Msg/day |\n|---|---|---|---|---|---|"
        );
        for u in &self.users {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                u.name,
                u.public_service_mission,
                u.duration,
                u.devices_declared,
                u.devices_seen,
                u.messages_per_day
            );
        }
        let _ = writeln!(
            m,
            "\nDevices declared: {}; seen this quarter: {}.",
            self.devices_declared, self.devices_seen
        );
        if !self.declared_not_seen.is_empty() {
            let _ = writeln!(
                m,
                "Declared but not seen: {}.",
                self.declared_not_seen
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(m, "\n## Admin accounts\n");
        if self.admin_accounts.is_empty() {
            let _ = writeln!(m, "None.");
        }
        for a in &self.admin_accounts {
            let _ = writeln!(m, "- {} ({}): {}", a.holder, a.member, a.scope);
        }
        let _ = writeln!(m, "\n## Changes since the last review\n");
        if self.changes_since_last_review.is_empty() {
            let _ = writeln!(m, "None.");
        }
        for (t, c) in &self.changes_since_last_review {
            let _ = writeln!(m, "- {}: {c}", t.format("%Y-%m-%d"));
        }
        let _ = writeln!(m, "\n## Pending, with deadlines\n");
        if self.pending.is_empty() {
            let _ = writeln!(m, "None.");
        }
        for p in &self.pending {
            let _ = writeln!(
                m,
                "- {} (filed {}, answer due {}{})",
                p.what,
                p.filed_at.date_naive(),
                p.answer_due.date_naive(),
                if p.overdue { ", OVERDUE" } else { "" }
            );
        }
        let _ = writeln!(m, "\n## Signatures\n");
        for s in signatures {
            let _ = writeln!(m, "- signed by {s} (ed25519 over the review's JSON bytes)");
        }
        m
    }
}

/// A review is for a quarter already begun (by the receiver's clock, give or take the
/// federation's skew), and its label, period and agreement fields agree.
pub fn check_period(r: &Review, now: DateTime<Utc>) -> Result<(), SignError> {
    let (label, start, end) = quarter_of(r.period_start);
    let bad = |why: &str| {
        Err(SignError::Decode(format!(
            "review {}/{}: {why}",
            r.agreement, r.quarter
        )))
    };
    if label != r.quarter || start != r.period_start || end != r.period_end {
        return bad("its quarter and period disagree");
    }
    if r.period_start > now + chrono::TimeDelta::minutes(5) {
        return bad("its quarter has not begun");
    }
    Ok(())
}

/// Of two different reviews of one agreement and quarter, the one both parties keep,
/// whichever each saw first: the host's over the guest's; between two by one party, the
/// later prepared; then the smaller bytes.
pub fn preferred<'a>(a: &'a SignedReview, b: &'a SignedReview) -> Result<&'a SignedReview, SignError> {
    let (ra, rb) = (a.review()?, b.review()?);
    let rank = |r: &Review| (r.prepared_by != r.host, std::cmp::Reverse(r.prepared_at));
    Ok(
        match rank(&ra).cmp(&rank(&rb)).then_with(|| a.bytes.cmp(&b.bytes)) {
            std::cmp::Ordering::Greater => b,
            _ => a,
        },
    )
}

/// A review as kept: its exact bytes and the committee members' signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReview {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub signatures: BTreeMap<MemberId, String>,
}

impl SignedReview {
    pub fn new(review: &Review) -> Result<SignedReview, SignError> {
        Ok(SignedReview {
            bytes: serde_json::to_vec(review).map_err(|e| SignError::Decode(e.to_string()))?,
            signatures: BTreeMap::new(),
        })
    }

    pub fn review(&self) -> Result<Review, SignError> {
        serde_json::from_slice(&self.bytes).map_err(|e| SignError::Decode(e.to_string()))
    }

    /// Review id: agreement and quarter (one review per quarter).
    pub fn key(&self) -> Result<String, SignError> {
        let r = self.review()?;
        Ok(format!("{}/{}", r.agreement, r.quarter))
    }

    pub fn sign(&mut self, member: &MemberId, key: &SigningKey) -> Result<(), SignError> {
        let r = self.review()?;
        if member != &r.host && member != &r.guest {
            return Err(SignError::NotAParty(member.clone()));
        }
        self.signatures
            .insert(member.clone(), sign_hex(key, REVIEW_DOMAIN, &self.bytes));
        Ok(())
    }

    /// Every signature present is a party's and verifies; returns the signers.
    pub fn verify(
        &self,
        keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>,
    ) -> Result<Vec<MemberId>, SignError> {
        let r = self.review()?;
        for (m, sig) in &self.signatures {
            if m != &r.host && m != &r.guest {
                return Err(SignError::NotAParty(m.clone()));
            }
            if !keys(m).is_some_and(|k| verify_hex(&k, REVIEW_DOMAIN, &self.bytes, sig)) {
                return Err(SignError::BadSignature(m.clone()));
            }
        }
        Ok(self.signatures.keys().cloned().collect())
    }
}
