//! The autopilot: its plan, checks and evaluations; start; pause, resume, promote, dismiss, abort.

use crate::api::audit::Action;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::Body;
use crate::api::autopilot::{AutopilotView, PlanAction, PlanActionBody, StartPlan};
use crate::server::autopilot::Service as Autopilot;
use crate::server::caller::Caller;
use crate::server::error::ApiError;
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/autopilot", get(view).post(start)).route("/api/v1/autopilot/{action}", post(act))
}

async fn view(State(state): State<AppState>, caller: Caller) -> Result<Json<AutopilotView>, ApiError> {
    Ok(Json(Autopilot::new(&state).view(&caller).await?))
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<StartPlan>, ApiError>,
) -> Result<Json<AutopilotView>, ApiError> {
    let svc = Autopilot::new(&state);
    match body {
        Ok(Body(b)) => svc.start(&caller, b).await,
        Err(e) => svc.refuse(&caller, Action::AutopilotStart, e).await,
    }
    .map(Json)
}

async fn act(
    State(state): State<AppState>,
    Path(action): Path<String>,
    caller: Caller,
    body: Result<Body<PlanActionBody>, ApiError>,
) -> Result<Json<AutopilotView>, ApiError> {
    let action = PlanAction::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!("{action:?} is not an action (pause, resume, promote, dismiss, abort)"))
    })?;
    let svc = Autopilot::new(&state);
    match body {
        Ok(Body(b)) => svc.act(&caller, action, b).await,
        Err(e) => svc.refuse(&caller, action.audited_as(), e).await,
    }
    .map(Json)
}
