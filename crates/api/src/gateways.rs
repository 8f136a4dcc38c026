use axum::extract::{Path, State};
use axum::http::StatusCode;
use entente_gateway::{AllowedSource, GatewayView, NewGateway};
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

/// What `PUT /v1/gateways/{eui}/source` takes: the address or network the gateway's
/// datagrams may come from, or null to learn it from the next datagram.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repin {
    pub source: Option<AllowedSource>,
}

pub async fn pin(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    Json(r): Json<Repin>,
) -> Result<axum::Json<GatewayView>, ApiError> {
    let eui = eui(&raw)?;
    let registry = s.gateways.clone();
    let source = r.source;
    let view = tokio::task::spawn_blocking(move || registry.pin(&eui, source))
        .await
        .map_err(ApiError::internal)??;
    match source {
        Some(src) => tracing::info!(%eui, source = %src, "gateway source pinned by the operator"),
        None => tracing::info!(%eui, "gateway source unpinned: the next datagram sets it"),
    }
    Ok(axum::Json(view))
}
