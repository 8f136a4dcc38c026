//! The node's management API: health, Prometheus metrics and the `/v1` resources,
//! behind bearer-token auth, with one JSON error shape everywhere.

mod agreements;
mod auth;
mod clock;
mod devices;
mod error;
mod extract;
mod gateways;
mod ledger;
mod metrics;
mod recipients;
mod serve;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use entente_gateway::{GatewayMetrics, Registry};
use entente_model::MemberId;

pub use error::ApiError;
pub use serve::{HttpLimits, TlsConfig, serve, tls_config};

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub member: MemberId,
    pub gateways: Arc<Registry>,
    pub gateway_metrics: GatewayMetrics,
    pub metrics: Arc<prometheus_client::registry::Registry>,
    pub operator_token: Arc<str>,
    /// The network server (None only in tests of the gateway endpoints alone).
    pub lns: Option<Arc<entente_lns::NetworkServer>>,
    pub delivery: Option<Arc<entente_delivery::Delivery>>,
    /// The federation, when the node has a roster.
    pub peering: Option<Arc<entente_peering::Peering>>,
    /// The agreements, when the node federates.
    pub agreements: Option<Arc<entente_agreements::Book>>,
    /// Usage counters, statements, billing and the ledger, when the node federates.
    pub accounts: Option<Arc<entente_ledger::accounts::Accounts>>,
    pub clock: entente_model::SharedClock,
    /// Present only on nodes started with `node.test_clock = true`.
    pub test_clock: Option<Arc<entente_model::OffsetClock>>,
    /// Told the new offset after each move (the node persists it).
    pub on_clock_change: Option<Arc<dyn Fn(chrono::TimeDelta) + Send + Sync>>,
}

/// Largest request body accepted: a CSV import of tens of thousands of devices fits.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/gateways", get(gateways::list).post(gateways::create))
        .route("/gateways/{eui}", get(gateways::show).delete(gateways::delete))
        .route("/gateways/{eui}/source", put(gateways::pin))
        .route("/devices", get(devices::list).post(devices::create))
        .route("/devices/import", post(devices::import))
        .route("/devices/{eui}", get(devices::show).delete(devices::delete))
        .route("/devices/{eui}/queue", get(devices::queue).post(devices::enqueue))
        .route("/devices/{eui}/uplinks", get(devices::uplinks))
        .route("/recipients", get(recipients::list).post(recipients::create))
        .route(
            "/recipients/{id}",
            get(recipients::show).delete(recipients::delete),
        )
        .route("/uplinks", get(recipients::pull))
        .route("/clock", get(clock::show).post(clock::advance))
        .route("/peers", get(peers))
        .route("/routes", get(routes))
        .route("/agreements", get(agreements::list).post(agreements::propose))
        .route("/agreements/import", post(agreements::import))
        .route("/agreements/{id}", get(agreements::show))
        .route("/agreements/{id}/document", get(agreements::document))
        .route("/agreements/{id}/amend", post(agreements::amend))
        .route("/agreements/{id}/review", post(agreements::review))
        .route("/agreements/{id}/reviews", get(agreements::reviews))
        .route("/agreements/{id}/access-requests", post(agreements::file_access))
        .route(
            "/agreements/{id}/access-requests/{request}/{answer}",
            post(agreements::answer_access),
        )
        .route("/agreements/{id}/{action}", post(agreements::action))
        .route("/refusals", get(agreements::refusals))
        .route("/ledger", get(ledger::list))
        .route(
            "/ledger/statements",
            get(ledger::statements).post(ledger::issue_statement),
        )
        .route("/ledger/disputes", get(ledger::disputes))
        .route(
            "/ledger/invoices",
            get(ledger::invoices).post(ledger::issue_invoice),
        )
        .route("/ledger/device-counts", post(ledger::issue_device_count))
        .route("/ledger/accept", post(ledger::accept))
        .route("/usage", get(ledger::usage))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_operator,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .nest("/v1", v1)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn health(axum::extract::State(s): axum::extract::State<ApiState>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "member": s.member,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Roster members with their liveness (connected, since, ping RTT, frames buffered).
async fn peers(axum::extract::State(s): axum::extract::State<ApiState>) -> axum::Json<serde_json::Value> {
    let peers = s.peering.as_ref().map(|p| p.peers()).unwrap_or_default();
    axum::Json(serde_json::json!({
        "federating": s.peering.is_some(),
        "peer_id": s.peering.as_ref().map(|p| p.peer_id().to_string()),
        "peers": peers,
    }))
}

#[derive(serde::Deserialize)]
struct RouteQuery {
    dev_addr: String,
}

/// Which member a DevAddr belongs to, by this node's federation routing table.
async fn routes(
    axum::extract::State(s): axum::extract::State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<RouteQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let a: entente_model::DevAddr = q
        .dev_addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("dev_addr: {e}")))?;
    let member = s.peering.as_ref().and_then(|p| p.route_dev_addr(a));
    Ok(axum::Json(serde_json::json!({ "dev_addr": a, "member": member })))
}
