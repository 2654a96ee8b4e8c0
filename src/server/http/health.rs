//! Probes and the dashboard's own metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::error::{from_sqlx, ApiError, Source, SourceError};
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(own_metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The state database (where the audit trail lives) answers.
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let probe = tokio::time::timeout(
        state.settings.source_timeout(),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.state_db),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Ok((StatusCode::OK, Json(json!({"status": "ready"})))),
        Ok(Err(e)) => Err(from_sqlx(Source::StateDatabase, &e).into()),
        Err(_) => {
            Err(SourceError::Timeout { system: Source::StateDatabase, after: state.settings.source_timeout() }.into())
        }
    }
}

/// The dashboard's own metrics, in Prometheus text format.
async fn own_metrics(State(state): State<AppState>) -> impl IntoResponse {
    use crate::server::own_metrics::CONTENT_TYPE;
    if let Ok(diary) = &state.diary {
        state.services.metrics.records_rollup(diary.rollup_size());
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], state.services.metrics.render())
}
