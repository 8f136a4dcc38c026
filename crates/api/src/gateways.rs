use axum::extract::{Path, State};
use axum::http::StatusCode;
use entente_gateway::{GatewayView, NewGateway};
use entente_model::GatewayEui;
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

fn eui(raw: &str) -> Result<GatewayEui, ApiError> {
    raw.parse()
        .map_err(|e: entente_model::ModelError| ApiError::bad_request(e.to_string()))
}

pub async fn list(State(s): State<ApiState>) -> axum::Json<Value> {
    let gateways = s.gateways.list();
    axum::Json(json!({ "gateways": gateways, "count": gateways.len() }))
}

pub async fn create(
    State(s): State<ApiState>,
    Json(new): Json<NewGateway>,
) -> Result<(StatusCode, axum::Json<GatewayView>), ApiError> {
    let registry = s.gateways.clone();
    // The registration is a synced RocksDB write: keep it off the async workers.
    let view = tokio::task::spawn_blocking(move || registry.create(new))
        .await
        .map_err(ApiError::internal)??;
    tracing::info!(eui = %view.record.eui, name = %view.record.name, "gateway registered");
    Ok((StatusCode::CREATED, axum::Json(view)))
}

pub async fn show(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<GatewayView>, ApiError> {
    let eui = eui(&raw)?;
    s.gateways
        .get(&eui)
        .map(axum::Json)
        .ok_or_else(|| entente_gateway::RegistryError::NotFound(eui).into())
}

pub async fn delete(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<StatusCode, ApiError> {
    let eui = eui(&raw)?;
    let registry = s.gateways.clone();
    tokio::task::spawn_blocking(move || registry.delete(&eui))
        .await
        .map_err(ApiError::internal)??;
    tracing::info!(%eui, "gateway deleted");
    Ok(StatusCode::NO_CONTENT)
}
