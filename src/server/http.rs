//! The REST API and health probes. Thin: every handler calls a service function that the
//! server functions call too.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::{from_sqlx, ApiError, Source};
use super::state::AppState;
use super::status;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(get_status))
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
        Ok(Err(e)) => Err(ApiError::Unavailable(from_sqlx(Source::StateDatabase, &e))),
        Err(_) => Err(ApiError::Unavailable(super::error::SourceError::Timeout {
            system: Source::StateDatabase,
            after: state.settings.source_timeout(),
        })),
    }
}

async fn get_status(State(state): State<AppState>) -> impl IntoResponse {
    Json(status::collect(&state).await)
}
