//! The rollout: read it, set the percentage, the kill switch.

use crate::api::audit::Action;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::Body;
use crate::api::rollout::{ChangeDone, KillSwitch, RolloutState, SetPercentage};
use crate::server::caller::Caller;
use crate::server::error::ApiError;
use crate::server::rollout;
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/rollout", get(current).post(set)).route("/api/v1/rollout/kill", post(kill))
}

async fn current(State(state): State<AppState>) -> Result<Json<RolloutState>, ApiError> {
    Ok(Json(rollout::current(&state).await?))
}

async fn set(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<SetPercentage>, ApiError>,
) -> Result<Json<ChangeDone>, ApiError> {
    match body {
        Ok(Body(b)) => rollout::set_percentage(&state, &caller, b).await,
        Err(e) => rollout::refuse(&state, &caller, Action::FlagSet, e).await,
    }
    .map(Json)
}

async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<KillSwitch>, ApiError>,
) -> Result<Json<ChangeDone>, ApiError> {
    match body {
        // In a task of its own: a browser or an ingress that gives up mid-kill does not cancel it.
        Ok(Body(b)) => tokio::spawn(async move { rollout::kill(&state, &caller, b.reason).await })
            .await
            .map_err(|e| ApiError::Failed(format!("the kill's work stopped: {e}")))?,
        Err(e) => rollout::refuse(&state, &caller, Action::FlagKill, e).await,
    }
    .map(Json)
}
