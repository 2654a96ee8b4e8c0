//! The audit trail, as JSON and as CSV.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{limit_param, Params};
use crate::server::audit;
use crate::server::error::ApiError;
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(as_json)).route("/api/v1/audit.csv", get(as_csv))
}

/// `limit` (default 200, at most 10,000) and an optional action name.
fn audit_params(p: Params) -> Result<(i64, Option<String>), ApiError> {
    let limit = limit_param(p.limit.as_deref(), 200, 10_000)?;
    if let Some(a) = &p.action {
        if a.is_empty() || a.len() > 64 || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            return Err(ApiError::BadRequest(format!("action: {a:?} is not an action name")));
        }
    }
    Ok((limit, p.action))
}

async fn as_json(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let (limit, action) = audit_params(p)?;
    Ok(Json(audit::list(&state.state_db, limit, action.as_deref()).await?))
}

async fn as_csv(State(state): State<AppState>, p: Params) -> Result<impl IntoResponse, ApiError> {
    let (limit, action) = audit_params(p)?;
    let entries = audit::list(&state.state_db, limit, action.as_deref()).await?;
    Ok(super::extract::csv_attachment("rollout-audit.csv", audit::to_csv(&entries)))
}
