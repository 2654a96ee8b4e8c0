//! The guided rollback: its plan, runs and their actions, incident reports, the deploy journal.

use crate::api::audit::Action;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::{run_id, Body};
use crate::api::rehearsal::{RehearsalView, Rehearsals, StartRehearsal};
use crate::api::rollback::{DeployEntry, NewDeploy, PlanRequest, RollbackPlan, RunAction, RunActionBody, RunView};
use crate::api::rollback::{RollForward, RollForwardView, StartRollback};
use crate::server::caller::Caller;
use crate::server::error::ApiError;
use crate::server::rollback::Service as Rollback;
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rollback", get(latest).post(start))
        .route("/api/v1/rollback/plan", post(plan))
        .route("/api/v1/rollback/rehearsals", get(rehearsals).post(rehearse))
        .route("/api/v1/rollback/{id}", get(run))
        .route("/api/v1/rollback/{id}/{action}", post(act))
        .route("/api/v1/rollback/{id}/roll_forward/plan", post(roll_forward_plan))
        .route("/api/v1/rollback/{id}/roll_forward/apply", post(roll_forward))
        .route("/api/v1/incidents/{file}", get(incident))
        .route("/api/v1/deploys", get(deploys).post(record_deploy))
}

async fn plan(
    State(state): State<AppState>,
    _who: super::extract::SignedIn,
    Body(b): Body<PlanRequest>,
) -> Result<Json<RollbackPlan>, ApiError> {
    Ok(Json(Rollback::new(&state).plan_request(b).await?))
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<StartRollback>, ApiError>,
) -> Result<Json<RunView>, ApiError> {
    let svc = Rollback::new(&state);
    match body {
        Ok(Body(b)) => svc.start(&caller, b).await,
        Err(e) => svc.refuse(&caller, Action::RollbackStart, e).await,
    }
    .map(Json)
}

async fn latest(State(state): State<AppState>) -> Result<Json<Option<RunView>>, ApiError> {
    Ok(Json(Rollback::new(&state).latest_run().await?))
}

async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<RunView>, ApiError> {
    Ok(Json(Rollback::new(&state).run(run_id(&id)?).await?))
}

async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    caller: Caller,
    body: Result<Body<RunActionBody>, ApiError>,
) -> Result<Json<RunView>, ApiError> {
    let id = run_id(&id)?;
    let action = RunAction::parse(&action)
        .ok_or_else(|| ApiError::NotFound(format!("{action:?} is not an action (retry, skip, abort, approve)")))?;
    let svc = Rollback::new(&state);
    match body {
        Ok(Body(b)) => svc.act(&caller, id, action, b).await,
        Err(e) => svc.refuse(&caller, action.audited_as(), e).await,
    }
    .map(Json)
}

async fn roll_forward_plan(
    State(state): State<AppState>,
    _who: super::extract::SignedIn,
    Path(id): Path<String>,
) -> Result<Json<RollForwardView>, ApiError> {
    Ok(Json(Rollback::new(&state).roll_forward_plan(run_id(&id)?).await?))
}

async fn roll_forward(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    body: Result<Body<RollForward>, ApiError>,
) -> Result<Json<RollForwardView>, ApiError> {
    let id = run_id(&id)?;
    let svc = Rollback::new(&state);
    match body {
        Ok(Body(b)) => svc.roll_forward(&caller, id, b).await,
        Err(e) => svc.refuse(&caller, Action::RollbackReapply, e).await,
    }
    .map(Json)
}

async fn rehearsals(
    State(state): State<AppState>,
    _who: super::extract::SignedIn,
) -> Result<Json<Rehearsals>, ApiError> {
    Ok(Json(Rollback::new(&state).rehearsals().await?))
}

async fn rehearse(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<StartRehearsal>, ApiError>,
) -> Result<Json<RehearsalView>, ApiError> {
    let svc = Rollback::new(&state);
    match body {
        Ok(Body(b)) => svc.rehearse(&caller, b).await,
        Err(e) => svc.refuse(&caller, Action::RollbackRehearse, e).await,
    }
    .map(Json)
}

async fn incident(State(state): State<AppState>, Path(file): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let id = file
        .strip_suffix(".md")
        .ok_or_else(|| ApiError::NotFound("incidents are served as /api/v1/incidents/{id}.md".into()))?;
    let md = Rollback::new(&state).incident_markdown(run_id(id)?).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"incident-{id}.md\"")),
        ],
        md,
    ))
}

async fn deploys(State(state): State<AppState>) -> Result<Json<Vec<DeployEntry>>, ApiError> {
    Ok(Json(Rollback::new(&state).deploys(200).await?))
}

async fn record_deploy(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Body<NewDeploy>, ApiError>,
) -> Result<Json<DeployEntry>, ApiError> {
    let svc = Rollback::new(&state);
    match body {
        Ok(Body(b)) => svc.record_deploy(&caller, b).await,
        Err(e) => svc.refuse(&caller, Action::DeployRecord, e).await,
    }
    .map(Json)
}
