//! `POST /v1/clock`: moves a test node's clock forward, so a test or a demo can let 10
//! minutes or 48 hours pass in an instant. Absent unless the node was started with
//! `node.test_clock = true`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::TimeDelta;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    pub advance_secs: u64,
}

pub async fn show(State(s): State<ApiState>) -> Result<axum::Json<Value>, ApiError> {
    let now = s.clock.now();
    let offset = s.test_clock.as_ref().map(|c| c.offset().num_seconds());
    Ok(axum::Json(json!({ "now": now, "test_offset_secs": offset })))
}

pub async fn advance(
    State(s): State<ApiState>,
    Json(a): Json<Advance>,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(c) = s.test_clock.as_ref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_test_clock",
            "this node runs on the wall clock (node.test_clock is off)",
        ));
    };
    if a.advance_secs > 20 * 365 * 86_400 {
        return Err(ApiError::bad_request("advance_secs is over 20 years"));
    }
    let offset = c.advance(TimeDelta::seconds(a.advance_secs as i64));
    if let Some(hook) = &s.on_clock_change {
        hook(offset);
    }
    tracing::info!(
        advance_secs = a.advance_secs,
        offset_secs = offset.num_seconds(),
        "test clock moved"
    );
    Ok(axum::Json(
        json!({ "now": s.clock.now(), "test_offset_secs": offset.num_seconds() }),
    ))
}
