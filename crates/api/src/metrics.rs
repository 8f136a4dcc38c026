use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::{ApiError, ApiState};

/// Prometheus scrape endpoint (OpenMetrics text). Gauges derived from state are
/// computed here, at scrape time, rather than on the frame path.
pub async fn render(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    s.gateway_metrics.gateways_registered.set(s.gateways.len() as i64);
    s.gateway_metrics
        .gateways_online
        .set(s.gateways.online_count() as i64);
    let mut body = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut body, &s.metrics).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}
