//! `/v1/agreements`: the conventions this member is party to, their lifecycle, access
//! requests and committee reviews; `/v1/refusals`: roamed frames refused, by reason.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use entente_agreements::{Agreement, AuthorisedUser, Book, BookError, LifecycleError, View};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

impl From<BookError> for ApiError {
    fn from(e: BookError) -> Self {
        let msg = e.to_string();
        match e {
            BookError::NotFound(_) | BookError::NoReview(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", msg)
            }
            BookError::Exists(_) => Self::new(StatusCode::CONFLICT, "already_exists", msg),
            BookError::Lifecycle(LifecycleError::Illegal { .. })
            | BookError::NothingToAnswer(..)
            | BookError::Lifecycle(LifecycleError::NoPendingAmendment) => {
                Self::new(StatusCode::CONFLICT, "illegal_transition", msg)
            }
            BookError::NotAParty(..)
            | BookError::Lifecycle(LifecycleError::WrongParty(_))
            | BookError::Lifecycle(LifecycleError::NotAllowed(..)) => {
                Self::new(StatusCode::FORBIDDEN, "not_allowed", msg)
            }
            BookError::Store(s) => Self::internal(s),
            _ => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg),
        }
    }
}

fn book(s: &ApiState) -> Result<Arc<Book>, ApiError> {
    s.agreements.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node does not federate (no roster), so it has no agreements",
        )
    })
}

async fn blocking<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Book) -> Result<T, BookError> + Send + 'static,
) -> Result<T, ApiError> {
    let b = book(s)?;
    Ok(tokio::task::spawn_blocking(move || f(&b))
        .await
        .map_err(ApiError::internal)??)
}

pub async fn list(State(s): State<ApiState>) -> Result<axum::Json<Vec<View>>, ApiError> {
    Ok(axum::Json(blocking(&s, |b| Ok(b.list())).await?))
}

pub async fn propose(
    State(s): State<ApiState>,
    Json(a): Json<Agreement>,
) -> Result<(StatusCode, axum::Json<View>), ApiError> {
    Ok((
        StatusCode::CREATED,
        axum::Json(blocking(&s, move |b| b.propose(&a)).await?),
    ))
}

pub async fn show(State(s): State<ApiState>, Path(id): Path<String>) -> Result<axum::Json<View>, ApiError> {
    Ok(axum::Json(blocking(&s, move |b| b.show(&id)).await?))
}

/// The signed documents exactly as held: both parties' copies are byte-identical.
pub async fn document(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<entente_agreements::Dossier>, ApiError> {
    Ok(axum::Json(blocking(&s, move |b| b.dossier(&id)).await?))
}

/// A dossier handed over outside the federation; refused unless it verifies and merges.
pub async fn import(
    State(s): State<ApiState>,
    Json(d): Json<entente_agreements::Dossier>,
) -> Result<axum::Json<View>, ApiError> {
    Ok(axum::Json(blocking(&s, move |b| b.import(d)).await?))
}

pub async fn action(
    State(s): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<axum::Json<View>, ApiError> {
    let f: fn(&Book, &str) -> Result<View, BookError> = match action.as_str() {
        "approve" => Book::approve,
        "reject" => Book::reject,
        "terminate" => Book::terminate,
        "suspend" => Book::suspend,
        "resume" => Book::resume,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {other:?}: approve, reject, terminate, suspend or resume"),
            ));
        }
    };
    Ok(axum::Json(blocking(&s, move |b| f(b, &id)).await?))
}

pub async fn amend(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(a): Json<Agreement>,
) -> Result<axum::Json<View>, ApiError> {
    Ok(axum::Json(blocking(&s, move |b| b.amend(&id, &a)).await?))
}

#[derive(Deserialize)]
pub struct NewAccessRequest {
    pub id: String,
    pub user: AuthorisedUser,
}

pub async fn file_access(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(r): Json<NewAccessRequest>,
) -> Result<(StatusCode, axum::Json<View>), ApiError> {
    if r.id.is_empty() || r.id.len() > 64 {
        return Err(ApiError::bad_request(
            "an access request id has 1 to 64 characters",
        ));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(blocking(&s, move |b| b.file_access(&id, &r.id, r.user)).await?),
    ))
}

pub async fn answer_access(
    State(s): State<ApiState>,
    Path((id, request, answer)): Path<(String, String, String)>,
) -> Result<axum::Json<View>, ApiError> {
    let approve = match answer.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "answer an access request with /approve or /refuse",
            ));
        }
    };
    Ok(axum::Json(
        blocking(&s, move |b| b.answer_access(&id, &request, approve)).await?,
    ))
}

/// Prepares this quarter's access-rights review (or countersigns the counterparty's)
/// and returns it as JSON, as Markdown, and signed.
pub async fn review(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let key = id.clone();
    let (review, signed) = blocking(&s, move |b| b.review(&id)).await?;
    // Signed by both: the review becomes a ledger record too.
    if let Some(a) = s.accounts.clone() {
        let r = signed.clone();
        let out = tokio::task::spawn_blocking(move || a.record_review(&key, &r)).await;
        if let Ok(Err(e)) = out {
            tracing::warn!(error = %e, "committee review not recorded in the ledger");
        }
    }
    let signers: Vec<_> = signed.signatures.keys().cloned().collect();
    Ok(axum::Json(json!({
        "review": review,
        "markdown": review.markdown(&signers),
        "signed": signed,
    })))
}

pub async fn reviews(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let v = blocking(&s, move |b| Ok(b.reviews(&id))).await?;
    let list: Vec<Value> = v
        .into_iter()
        .map(|(k, r)| {
            json!({
                "id": k,
                "signed_by": r.signatures.keys().collect::<Vec<_>>(),
                "review": r.review().ok(),
                "signed": r,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "reviews": list })))
}

/// Frames refused by the roaming policy (both sides) and sync documents refused.
pub async fn refusals(State(s): State<ApiState>) -> axum::Json<Value> {
    let frames = s.peering.as_ref().map(|p| p.refusals()).unwrap_or_default();
    let documents = s.agreements.as_ref().map(|b| b.rejections()).unwrap_or_default();
    axum::Json(json!({ "frames": frames, "documents": documents }))
}
