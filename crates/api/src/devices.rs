//! `/v1/devices`: create, import (CSV), list, show, delete; downlink queue; stored uplinks.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use entente_lns::import::{ImportDefaults, parse_csv};
use entente_lns::{Device, DeviceSummary, LnsError, QueueItem, UplinkRecord};
use entente_model::DevEui;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::extract::Json;
use crate::{ApiError, ApiState};

fn eui(raw: &str) -> Result<DevEui, ApiError> {
    raw.parse()
        .map_err(|e: entente_model::ModelError| ApiError::bad_request(e.to_string()))
}

impl From<LnsError> for ApiError {
    fn from(e: LnsError) -> Self {
        match e {
            LnsError::DeviceNotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            LnsError::DeviceExists(_) => Self::new(StatusCode::CONFLICT, "already_exists", e.to_string()),
            LnsError::InvalidDevice(..)
            | LnsError::DevAddrOutsideBlock(_)
            | LnsError::BadFPort(_)
            | LnsError::PayloadTooLarge(_)
            | LnsError::PayloadOverRx2 { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            LnsError::Store(s) => Self::internal(s),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LnsError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)??)
}

fn lns(s: &ApiState) -> Result<std::sync::Arc<entente_lns::NetworkServer>, ApiError> {
    s.lns.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the network server is not running",
        )
    })
}

pub async fn list(State(s): State<ApiState>) -> Result<axum::Json<Value>, ApiError> {
    let lns = lns(&s)?;
    let devices: Vec<DeviceSummary> = blocking(move || lns.devices())
        .await?
        .iter()
        .map(Device::summary)
        .collect();
    Ok(axum::Json(json!({ "devices": devices, "count": devices.len() })))
}

pub async fn create(
    State(s): State<ApiState>,
    Json(d): Json<Device>,
) -> Result<(StatusCode, axum::Json<DeviceSummary>), ApiError> {
    let lns = lns(&s)?;
    if let Some(name) = d.profile.decoder.as_deref()
        && !entente_delivery::decoders::CATALOGUE.contains(&name)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "unknown decoder {name:?} (known: {})",
                entente_delivery::decoders::CATALOGUE.join(", ")
            ),
        ));
    }
    let summary = d.summary();
    blocking(move || lns.create_devices(std::slice::from_ref(&d))).await?;
    tracing::info!(dev_eui = %summary.dev_eui, "device created");
    Ok((StatusCode::CREATED, axum::Json(summary)))
}

/// `POST /v1/devices/import` with a `text/csv` body: all devices or none.
pub async fn import(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let lns = lns(&s)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/csv") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as text/csv",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the file is not UTF-8: {e}")))?;
    let defaults = ImportDefaults {
        decoders: Some(entente_delivery::decoders::CATALOGUE),
        ..ImportDefaults::default()
    };
    let devices = parse_csv(text, &defaults)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let n = devices.len();
    blocking(move || lns.create_devices(&devices)).await?;
    tracing::info!(devices = n, "devices imported");
    Ok((StatusCode::CREATED, axum::Json(json!({ "imported": n }))))
}

pub async fn show(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<axum::Json<Value>, ApiError> {
    let lns = lns(&s)?;
    let eui = eui(&raw)?;
    let (d, session) = blocking(move || Ok((lns.device(&eui)?, lns.session(&eui)?))).await?;
    // Counters and radio state only: keys never leave the node through the API.
    let session = session.map(|s| {
        json!({
            "dev_addr": s.dev_addr,
            "mac_version": s.mac_version,
            "fcnt_up": s.fcnt_up,
            "n_fcnt_down": s.n_fcnt_down,
            "a_fcnt_down": s.a_fcnt_down,
            "rx_delay": s.rx_delay,
            "rx1_dr_offset": s.rx1_dr_offset,
            "rx2_dr": s.rx2_dr,
            "data_rate": s.data_rate,
            "last_seen": s.last_seen,
            "last_gateway": s.last_gateway,
            "battery": s.battery,
            "margin": s.margin,
            "app_s_key_held": s.app_s_key.is_some(),
        })
    });
    Ok(axum::Json(json!({ "device": d.summary(), "session": session })))
}

pub async fn delete(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<StatusCode, ApiError> {
    let lns = lns(&s)?;
    let eui = eui(&raw)?;
    blocking(move || lns.delete_device(&eui)).await?;
    tracing::info!(%eui, "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDownlink {
    pub fport: u8,
    /// Hexadecimal payload.
    pub data: String,
    #[serde(default)]
    pub confirmed: bool,
}

pub async fn enqueue(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    Json(d): Json<NewDownlink>,
) -> Result<(StatusCode, axum::Json<QueueItem>), ApiError> {
    let lns = lns(&s)?;
    let eui = eui(&raw)?;
    let payload = hex::decode(d.data.trim())
        .map_err(|e| ApiError::bad_request(format!("data is not hexadecimal: {e}")))?;
    let item = blocking(move || lns.enqueue(&eui, d.fport, payload, d.confirmed)).await?;
    Ok((StatusCode::CREATED, axum::Json(item)))
}

pub async fn queue(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let lns = lns(&s)?;
    let eui = eui(&raw)?;
    let items = blocking(move || {
        lns.device(&eui)?;
        lns.queue(&eui)
    })
    .await?;
    Ok(axum::Json(json!({ "queue": items, "count": items.len() })))
}

#[derive(Debug, Deserialize)]
pub struct UplinkQuery {
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct UplinkView<'a> {
    #[serde(flatten)]
    record: &'a UplinkRecord,
    payload_hex: String,
    gateways: usize,
}

pub async fn uplinks(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
    Query(q): Query<UplinkQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let lns = lns(&s)?;
    let eui = eui(&raw)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let records = blocking(move || {
        lns.device(&eui)?;
        lns.uplinks(&eui, q.after, limit)
    })
    .await?;
    let views: Vec<UplinkView> = records
        .iter()
        .map(|r| UplinkView {
            record: r,
            payload_hex: hex::encode(&r.payload),
            gateways: r.rx.len(),
        })
        .collect();
    let next = records.last().map(|r| r.seq);
    Ok(axum::Json(
        json!({ "uplinks": views, "count": views.len(), "next_after": next }),
    ))
}
