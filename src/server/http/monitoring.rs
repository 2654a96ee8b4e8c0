//! What the overview reads: status, record counts, adoption, alerts, the flag's history.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{limit_param, window_param, Params};
use crate::server::error::ApiError;
use crate::server::service;
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/records/summary", get(records_summary))
        .route("/api/v1/records/series", get(records_series))
        .route("/api/v1/records/doubled", get(records_doubled))
        .route("/api/v1/adoption", get(adoption))
        .route("/api/v1/adoption/versions", get(client_versions))
        .route("/api/v1/adoption/versions.csv", get(client_versions_csv))
        .route("/api/v1/patients/crossover", get(crossover))
        .route("/api/v1/patients/dose-totals", get(dose_totals))
        .route("/api/v1/patients/dose-totals.csv", get(dose_totals_csv))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/flag/history", get(flag_history))
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    Json(service::status(&state).await)
}

async fn records_summary(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let window = window_param("window", p.window.as_deref(), "24h")?;
    Ok(Json(service::records_summary(&state, window).await?))
}

async fn records_series(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", p.range.as_deref(), "7d")?;
    let step = window_param("step", p.step.as_deref(), "1h")?;
    if step > range {
        return Err(ApiError::BadRequest("step must not be longer than range".into()));
    }
    let max = crate::server::records::MAX_BUCKETS;
    if range.as_secs() / step.as_secs() > max {
        return Err(ApiError::BadRequest(format!("range/step gives more than {max} buckets; choose a longer step")));
    }
    Ok(Json(service::records_series(&state, range, step).await?))
}

async fn records_doubled(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let limit = limit_param(p.limit.as_deref(), 20, 1000)?;
    Ok(Json(service::doubled_records(&state, limit).await?))
}

async fn adoption(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", p.range.as_deref(), "24h")?;
    Ok(Json(service::adoption(&state, range).await?))
}

async fn client_versions(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", p.range.as_deref(), "24h")?;
    Ok(Json(service::client_versions(&state, range).await?))
}

/// The versions table as CSV (`client-versions-24h.csv`): exactly the numbers of the JSON.
async fn client_versions_csv(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", p.range.as_deref(), "24h")?;
    let v = service::client_versions(&state, range).await?;
    Ok(super::extract::csv_attachment(&format!("client-versions-{range}.csv"), crate::server::versions::table_csv(&v)))
}

/// Patients who cross over per day; the newest who went back (user ids) only for a signed-in
/// caller (`examples` is null otherwise).
async fn crossover(
    State(state): State<AppState>,
    caller: crate::server::caller::Caller,
    _: Params,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service::crossover(&state, caller.who().is_some()).await?))
}

/// Each patient's daily total before and after the move; the most changed patients (user ids)
/// only for a signed-in caller (`examples` is null otherwise).
async fn dose_totals(
    State(state): State<AppState>,
    caller: crate::server::caller::Caller,
    _: Params,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service::dose_totals(&state, caller.who().is_some()).await?))
}

/// The distribution as CSV; with `patients=yes` (signed-in callers only) the changed patients'
/// rows too: an export carries user ids only when asked.
async fn dose_totals_csv(
    State(state): State<AppState>,
    caller: crate::server::caller::Caller,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let patients = match p.patients.as_deref() {
        None | Some("no") => false,
        Some("yes") if caller.who().is_some() => true,
        Some("yes") => return Err(ApiError::Unauthenticated("patients=yes needs a signed-in caller".into())),
        Some(other) => return Err(ApiError::BadRequest(format!("patients: yes or no, not {other:?}"))),
    };
    let t = service::dose_totals(&state, patients).await?;
    Ok(super::extract::csv_attachment("dose-totals.csv", crate::server::dose_totals::csv(&t)))
}

async fn alerts(State(state): State<AppState>, _: Params) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(service::alerts(&state).await?))
}

async fn flag_history(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let range = window_param("range", p.range.as_deref(), "30d")?;
    Ok(Json(service::flag_history(&state, range).await?))
}
