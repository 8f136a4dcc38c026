//! `/v1/ledger` and `/v1/usage`: usage counters, usage statements and disputes, billing
//! records, device-count statements, and the ledger export.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use entente_ledger::accounts::{Accounts, AccountsError};
use entente_ledger::chain::{Entry, Kind};
use entente_ledger::statement::{Dispute, UsageStatement};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        let msg = e.to_string();
        match e {
            AccountsError::Book(b) => b.into(),
            AccountsError::Ledger(entente_ledger::LedgerError::Store(s)) => Self::internal(s),
            AccountsError::Ledger(entente_ledger::LedgerError::NotFound(..)) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", msg)
            }
            AccountsError::Policy(entente_ledger::policy::PolicyError::Io { .. }) => Self::internal(msg),
            _ => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg),
        }
    }
}

fn accounts(s: &ApiState) -> Result<Arc<Accounts>, ApiError> {
    s.accounts.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node does not federate (no roster), so it keeps no ledger",
        )
    })
}

async fn blocking<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Accounts) -> Result<T, AccountsError> + Send + 'static,
) -> Result<T, ApiError> {
    let a = accounts(s)?;
    Ok(tokio::task::spawn_blocking(move || f(&a))
        .await
        .map_err(ApiError::internal)??)
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub agreement: Option<String>,
    pub kind: Option<String>,
    pub format: Option<String>,
}

/// The ledger's records (JSON, or `format=csv` for the CSV export).
pub async fn list(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| ApiError::bad_request(format!("unknown kind {k:?}")))?),
    };
    let entries = blocking(&s, move |a| a.records(q.agreement.as_deref(), kind)).await?;
    Ok(match q.format.as_deref() {
        Some("csv") => (
            [("content-type", "text/csv")],
            entente_ledger::chain::to_csv(&entries),
        )
            .into_response(),
        None | Some("json") => axum::Json(entries).into_response(),
        Some(f) => return Err(ApiError::bad_request(format!("format {f:?}: json or csv"))),
    })
}

#[derive(Deserialize)]
pub struct StatementRequest {
    pub agreement: String,
    pub day: chrono::NaiveDate,
}

pub async fn issue_statement(
    State(s): State<ApiState>,
    Json(r): Json<StatementRequest>,
) -> Result<(StatusCode, axum::Json<Entry>), ApiError> {
    let e = blocking(&s, move |a| a.issue_statement(&r.agreement, r.day)).await?;
    Ok((StatusCode::CREATED, axum::Json(e)))
}

#[derive(Deserialize)]
pub struct YearRequest {
    pub agreement: String,
    pub year: i32,
}

pub async fn issue_invoice(
    State(s): State<ApiState>,
    Json(r): Json<YearRequest>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let (inv, e) = blocking(&s, move |a| a.issue_invoice(&r.agreement, r.year)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "invoice": inv, "record": e })),
    ))
}

pub async fn issue_device_count(
    State(s): State<ApiState>,
    Json(r): Json<YearRequest>,
) -> Result<(StatusCode, axum::Json<Entry>), ApiError> {
    let e = blocking(&s, move |a| a.issue_device_count(&r.agreement, r.year)).await?;
    Ok((StatusCode::CREATED, axum::Json(e)))
}

#[derive(Deserialize)]
pub struct AcceptRequest {
    pub agreement: String,
    pub issuer: entente_model::MemberId,
    pub seq: u64,
}

/// Countersigns a counterparty's record (an invoice accepted, a device count agreed).
pub async fn accept(
    State(s): State<ApiState>,
    Json(r): Json<AcceptRequest>,
) -> Result<axum::Json<Entry>, ApiError> {
    Ok(axum::Json(
        blocking(&s, move |a| a.accept(&r.agreement, &r.issuer, r.seq)).await?,
    ))
}

#[derive(Deserialize)]
pub struct AgreementQuery {
    pub agreement: Option<String>,
    /// The period, inclusive (YYYY-MM-DD).
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
}

impl AgreementQuery {
    fn covers(&self, start: chrono::NaiveDate, end: chrono::NaiveDate) -> bool {
        self.from.is_none_or(|f| end >= f) && self.to.is_none_or(|t| start <= t)
    }
}

/// Usage statements with where each stands: countersigned, disputed or awaiting.
pub async fn statements(
    State(s): State<ApiState>,
    Query(q): Query<AgreementQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let agreement = q.agreement.clone();
    let all = blocking(&s, move |a| a.records(agreement.as_deref(), None)).await?;
    let disputes: Vec<Dispute> = all
        .iter()
        .filter(|e| e.kind == Kind::Dispute)
        .filter_map(|e| e.body_json().ok())
        .collect();
    let v: Vec<Value> = all
        .iter()
        .filter(|e| e.kind == Kind::UsageStatement)
        .filter_map(|e| {
            let st: UsageStatement = e.body_json().ok()?;
            if !q.covers(st.day, st.day) {
                return None;
            }
            let status = if disputes.iter().any(|d| d.statement_hash == e.hash) {
                "disputed"
            } else if e.signatures.len() >= 2 {
                "countersigned"
            } else {
                "awaiting"
            };
            Some(json!({
                "agreement": e.agreement, "issuer": e.issuer, "seq": e.seq, "hash": e.hash,
                "day": st.day, "frames": st.summary.totals.frames(), "totals": st.summary.totals,
                "merkle_root": st.summary.merkle_root, "status": status,
                "signed_by": e.signatures.keys().collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "statements": v })))
}

pub async fn disputes(
    State(s): State<ApiState>,
    Query(q): Query<AgreementQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let agreement = q.agreement.clone();
    let all = blocking(&s, move |a| a.records(agreement.as_deref(), Some(Kind::Dispute))).await?;
    let v: Vec<Value> = all
        .iter()
        .filter_map(|e| {
            let d: Dispute = e.body_json().ok()?;
            if !q.covers(d.day, d.day) {
                return None;
            }
            Some(json!({ "issuer": e.issuer, "seq": e.seq, "hash": e.hash, "dispute": d }))
        })
        .collect();
    Ok(axum::Json(json!({ "disputes": v })))
}

pub async fn invoices(
    State(s): State<ApiState>,
    Query(q): Query<AgreementQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let agreement = q.agreement.clone();
    let all = blocking(&s, move |a| {
        a.records(agreement.as_deref(), Some(Kind::BillingRecord))
    })
    .await?;
    let v: Vec<Value> = all
        .iter()
        .filter_map(|e| {
            let inv: entente_ledger::Invoice = e.body_json().ok()?;
            if !q.covers(inv.period_start, inv.period_end) {
                return None;
            }
            Some(json!({
                "issuer": e.issuer, "seq": e.seq, "hash": e.hash, "invoice": inv,
                "accepted": e.signatures.len() >= 2,
                "signed_by": e.signatures.keys().collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "invoices": v })))
}

/// Usage counters per device under an agreement.
pub async fn usage(
    State(s): State<ApiState>,
    Query(q): Query<AgreementQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(agreement) = q.agreement else {
        return Err(ApiError::bad_request("agreement is required"));
    };
    let devices = blocking(&s, move |a| Ok(a.usage.devices(&agreement)?)).await?;
    let v: Vec<Value> = devices
        .into_iter()
        .map(|(d, c)| json!({ "device": d, "counters": c }))
        .collect();
    Ok(axum::Json(json!({ "devices": v })))
}
