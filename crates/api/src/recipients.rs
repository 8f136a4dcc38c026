//! `/v1/recipients` (where each device group's data goes) and `/v1/uplinks` (REST pull).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use entente_delivery::tables::RecipientState;
use entente_delivery::{Delivery, DeliveryError, NewRecipient, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

impl From<DeliveryError> for ApiError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            DeliveryError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            DeliveryError::NotPull(_) => Self::new(StatusCode::CONFLICT, "not_pull", e.to_string()),
            DeliveryError::CursorAhead { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "cursor_ahead", e.to_string())
            }
            DeliveryError::Store(s) => Self::internal(s),
        }
    }
}

fn delivery(s: &ApiState) -> Result<Arc<Delivery>, ApiError> {
    s.delivery.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "application delivery is not running",
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeliveryError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)??)
}

#[derive(Serialize)]
pub struct RecipientView {
    #[serde(flatten)]
    recipient: Recipient,
    queue_depth: u64,
    state: RecipientState,
}

fn view((recipient, queue_depth, state): (Recipient, u64, RecipientState)) -> RecipientView {
    RecipientView {
        recipient,
        queue_depth,
        state,
    }
}

pub async fn list(State(s): State<ApiState>) -> Result<axum::Json<Value>, ApiError> {
    let d = delivery(&s)?;
    let all: Vec<RecipientView> = d.list().into_iter().map(view).collect();
    Ok(axum::Json(json!({ "recipients": all, "count": all.len() })))
}

pub async fn create(
    State(s): State<ApiState>,
    Json(new): Json<NewRecipient>,
) -> Result<(StatusCode, axum::Json<Recipient>), ApiError> {
    let d = delivery(&s)?;
    let r = blocking(move || d.create(new)).await?;
    Ok((StatusCode::CREATED, axum::Json(r)))
}

fn id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("{raw:?} is not a recipient id")))
}

pub async fn show(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<RecipientView>, ApiError> {
    let d = delivery(&s)?;
    let id = id(&raw)?;
    Ok(axum::Json(view(blocking(move || d.get(id)).await?)))
}

pub async fn delete(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<StatusCode, ApiError> {
    let d = delivery(&s)?;
    let id = id(&raw)?;
    blocking(move || d.delete(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct PullQuery {
    pub recipient: Option<String>,
    #[serde(default)]
    pub cursor: u64,
    pub limit: Option<usize>,
}

/// REST pull. The cursor returned is passed back on the next call; doing so acknowledges
/// everything up to it.
pub async fn pull(
    State(s): State<ApiState>,
    Query(q): Query<PullQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let d = delivery(&s)?;
    let raw = q
        .recipient
        .ok_or_else(|| ApiError::bad_request("the query needs recipient=ID (a rest_pull recipient)"))?;
    let id = id(&raw)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let cursor = q.cursor;
    let (uplinks, next) = blocking(move || d.pull(id, cursor, limit)).await?;
    Ok(axum::Json(json!({
        "uplinks": uplinks,
        "count": uplinks.len(),
        "cursor": next,
    })))
}
