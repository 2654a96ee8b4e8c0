//! The REST API and health probes. Thin: every handler calls a service function that the
//! server functions call too.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::{from_sqlx, ApiError, Source};
use super::service;
use super::state::AppState;
use crate::api::window::Window;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(own_metrics))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/records/summary", get(records_summary))
        .route("/api/v1/records/series", get(records_series))
        .route("/api/v1/records/doubled", get(records_doubled))
        .route("/api/v1/adoption", get(adoption))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/flag/history", get(flag_history))
}

async fn adoption(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", params(q)?.range.as_deref(), "24h")?;
    Ok(Json(service::adoption(&state, range).await.map_err(ApiError::Unavailable)?))
}

async fn alerts(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    params(q)?;
    Ok(Json(service::alerts(&state).await.map_err(ApiError::Unavailable)?))
}

async fn flag_history(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", params(q)?.range.as_deref(), "30d")?;
    Ok(Json(service::flag_history(&state, range).await.map_err(ApiError::Unavailable)?))
}

/// Query parameters, all optional strings so that every bad value gets our own 400 message.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    window: Option<String>,
    range: Option<String>,
    step: Option<String>,
    limit: Option<String>,
}

fn params(q: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    q.map(|Query(p)| p).map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
}

fn window_param(name: &str, value: Option<&str>, default: &str) -> Result<Window, ApiError> {
    value.unwrap_or(default).parse::<Window>().map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
}

async fn records_summary(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let p = params(q)?;
    let window = window_param("window", p.window.as_deref(), "24h")?;
    Ok(Json(service::records_summary(&state, window).await.map_err(ApiError::Unavailable)?))
}

async fn records_series(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let p = params(q)?;
    let range = window_param("range", p.range.as_deref(), "7d")?;
    let step = window_param("step", p.step.as_deref(), "1h")?;
    if step > range {
        return Err(ApiError::BadRequest("step must not be longer than range".into()));
    }
    if range.as_secs() / step.as_secs() > super::records::MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "range/step gives more than {} buckets; choose a longer step",
            super::records::MAX_BUCKETS
        )));
    }
    Ok(Json(service::records_series(&state, range, step).await.map_err(ApiError::Unavailable)?))
}

async fn records_doubled(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let p = params(q)?;
    let limit = match p.limit.as_deref() {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit: {l:?} is not a whole number from 1 to 1000")))?,
    };
    Ok(Json(service::doubled_records(&state, limit).await.map_err(ApiError::Unavailable)?))
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
    Json(service::status(&state).await)
}

/// The dashboard's own metrics, in Prometheus text format.
async fn own_metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.services.metrics.render())
}
