//! The Kubernetes endpoints of Jobs, their pods' logs and CronJobs (`jobs.rs` runs them), behind
//! the same authentication, faults and RBAC as the rest of the emulated API server.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::jobs::CreateError;
use crate::kube_api::{json_body, not_found, status, KubeStatus};
use crate::World;

pub fn routes() -> Router<World> {
    Router::new()
        .route("/apis/batch/v1/namespaces/{ns}/jobs", post(create_job))
        .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job))
        .route("/apis/batch/v1/namespaces/{ns}/cronjobs/{name}", get(get_cronjob))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
}

fn in_namespace(world: &World, ns: &str, kind: &str, name: &str) -> Result<(), KubeStatus> {
    if ns != world.cluster.snapshot().0.namespace {
        return Err(not_found(kind, name));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct CreateQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
}

async fn create_job(
    State(world): State<World>,
    Path(ns): Path<String>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), KubeStatus> {
    in_namespace(&world, &ns, "namespaces", &ns)?;
    let job = json_body(&headers, &body)?;
    let dry_run = q.dry_run.as_deref() == Some("All");
    match world.cluster.node.create(&ns, job, dry_run) {
        Ok(job) => Ok((StatusCode::CREATED, Json(job))),
        Err(CreateError::Invalid(why)) => {
            Err(status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &format!("Job.batch is invalid: {why}")))
        }
        Err(CreateError::Exists(name)) => {
            Err(status(StatusCode::CONFLICT, "AlreadyExists", &format!("jobs.batch \"{name}\" already exists")))
        }
    }
}

async fn get_job(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, KubeStatus> {
    in_namespace(&world, &ns, "jobs.batch", &name)?;
    world.cluster.node.get(&name).map(Json).ok_or_else(|| not_found("jobs.batch", &name))
}

async fn get_cronjob(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>, KubeStatus> {
    in_namespace(&world, &ns, "cronjobs.batch", &name)?;
    let last = world.cluster.node.cronjob(&name).ok_or_else(|| not_found("cronjobs.batch", &name))?;
    let mut status = json!({});
    if let Some(t) = last {
        status["lastSuccessfulTime"] = json!(t.to_rfc3339());
        status["lastScheduleTime"] = json!(t.to_rfc3339());
    }
    Ok(Json(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"schedule": "10 4 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "backup", "image": "postgres:16"}]}}}}},
        "status": status,
    })))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

async fn list_pods(
    State(world): State<World>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, KubeStatus> {
    in_namespace(&world, &ns, "namespaces", &ns)?;
    let job = q.label_selector.as_deref().and_then(|s| s.strip_prefix("job-name="));
    Ok(Json(world.cluster.node.pods(&ns, job)))
}

async fn pod_log(State(world): State<World>, Path((ns, name)): Path<(String, String)>) -> Response {
    if let Err(e) = in_namespace(&world, &ns, "pods", &name) {
        return e.into_response();
    }
    match world.cluster.node.log(&name) {
        Some(text) => ([("content-type", "text/plain")], text).into_response(),
        None => not_found("pods", &name).into_response(),
    }
}
