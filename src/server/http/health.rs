//! Probes and the dashboard's own metrics.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(own_metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready while the process serves: an outside system that fails (the state database included)
/// degrades what the dashboard can do but never takes it out of its Service, for the kill switch
/// must stay reachable. What fails, and since when, is in the answer and in `/api/v1/status`.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({"status": "ready", "failing_since": state.services.health.snapshot()}))
}

/// The dashboard's own metrics, in Prometheus text format.
async fn own_metrics(State(state): State<AppState>) -> impl IntoResponse {
    use crate::server::own_metrics::CONTENT_TYPE;
    if let Ok(diary) = &state.diary {
        state.services.metrics.records_rollup(diary.rollup_size());
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], state.services.metrics.render())
}
