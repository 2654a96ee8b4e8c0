//! Emulation of the few Kubernetes API endpoints rollout-dashboard uses, with the real wire
//! shapes (objects, `Status` errors, resourceVersion conflicts) so that kube-rs talks to it as
//! it would to an API server:
//! - ConfigMap: GET, PUT (replace), PATCH (merge / strategic merge)
//! - Deployment: GET; its `scale` subresource: GET, PUT, PATCH
//! - Job: POST (also `dryRun=All`), GET; pods: list by `job-name`, their log; CronJob: GET
//!   (`kube_jobs_api.rs`, run by `jobs.rs`)

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cluster::{ClusterSnapshot, Fault};
use crate::World;

pub fn router(world: &World) -> Router<World> {
    let k8s = Router::new()
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_configmap).put(replace_configmap).patch(patch_configmap),
        )
        .route("/apis/apps/v1/namespaces/{ns}/deployments/{name}", get(get_deployment))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(get_scale).put(replace_scale).patch(patch_scale),
        )
        .route("/version", get(version))
        .merge(crate::kube_jobs_api::routes());
    Router::new()
        .merge(k8s.route_layer(middleware::from_fn_with_state(world.clone(), guard)))
        .route("/__emulator/fault", post(set_fault))
        .route("/__emulator/doubled", post(set_doubled))
        .route("/__emulator/legacy_clients", post(set_legacy_clients))
        .route("/__emulator/traffic", post(set_traffic))
        .route("/__emulator/stuck", post(set_stuck))
}

#[derive(serde::Deserialize)]
struct Stuck {
    percent: Option<u32>,
}

/// `POST /__emulator/stuck {"percent": 5}`: the writers stop reading the flag and act on that
/// percentage whatever it says (`{"percent": null}`: they follow the flag again).
async fn set_stuck(State(world): State<World>, Json(s): Json<Stuck>) -> impl IntoResponse {
    world.cluster.set_stuck_percent(s.percent);
    Json(json!({"stuck_percent": world.cluster.stuck_percent()}))
}

#[derive(serde::Deserialize)]
struct TrafficRate {
    per_replica_per_s: f64,
}

/// `POST /__emulator/traffic {"per_replica_per_s": 4}`: the patients' visits a second per ready
/// replica from now on (0 stops them), as `serve --rate-per-replica` sets it at the start.
async fn set_traffic(State(world): State<World>, Json(t): Json<TrafficRate>) -> impl IntoResponse {
    world.cluster.set_per_replica_per_s(t.per_replica_per_s);
    Json(json!({"per_replica_per_s": world.cluster.per_replica_per_s()}))
}

#[derive(serde::Deserialize)]
struct LegacyClients {
    per_s: f64,
}

/// `POST /__emulator/legacy_clients {"per_s": 3}`: old clients that ignore the flag write that
/// many legacy entries a second on top of the replicas' own (0 stops them): a legacy surge.
async fn set_legacy_clients(State(world): State<World>, Json(l): Json<LegacyClients>) -> impl IntoResponse {
    world.cluster.set_legacy_clients_per_s(l.per_s);
    Json(json!({"legacy_clients_per_s": world.cluster.legacy_clients_per_s()}))
}

#[derive(serde::Deserialize)]
struct Doubled {
    percent: u32,
}

/// `POST /__emulator/doubled {"percent": 10}`: that share of split-writing clients start copying
/// `dose` into both parts (0 stops them).
async fn set_doubled(State(world): State<World>, Json(d): Json<Doubled>) -> impl IntoResponse {
    world.cluster.set_doubled_percent(d.percent);
    Json(json!({"doubled_percent": world.cluster.doubled_percent()}))
}

/// Authentication and fault injection in front of every Kubernetes endpoint.
async fn guard(State(world): State<World>, req: Request, next: Next) -> Response {
    match world.cluster.fault() {
        Fault::None => {}
        Fault::Error => {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "injected fault").into_response()
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(300)).await;
        }
        Fault::ErrorAfterWrite if req.method() != axum::http::Method::GET => {
            let resp = next.run(req).await;
            if resp.status().is_success() {
                world.cluster.set_fault(Fault::Error);
            }
            return resp;
        }
        Fault::ErrorAfterWrite => {}
    }
    let presented =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // A cluster administrator (people acting outside the dashboard, as with kubectl): anything.
    let admin = world.cluster.admin_token().is_some_and(|t| presented == Some(t.as_str()));
    if let Some(token) = &world.cluster.token {
        if presented != Some(token.as_str()) && !admin {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized").into_response();
        }
    }
    if let (false, Some(role), Some(attrs)) =
        (admin, world.cluster.role(), crate::rbac::Attributes::of(req.method().as_str(), req.uri().path()))
    {
        if !role.allows(&attrs) {
            tracing::warn!(verb = attrs.verb, resource = attrs.resource, name = attrs.name, "RBAC: forbidden");
            return status(StatusCode::FORBIDDEN, "Forbidden", &role.forbidden_message(&attrs)).into_response();
        }
    }
    next.run(req).await
}

async fn set_fault(State(world): State<World>, Json(fault): Json<Fault>) -> impl IntoResponse {
    world.cluster.set_fault(fault);
    Json(json!({"fault": fault}))
}

async fn version() -> Json<Value> {
    Json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-emulated", "platform": "linux/amd64"}))
}

/// A Kubernetes `Status` object, as the API server returns for every error.
#[derive(Debug)]
pub struct KubeStatus {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl IntoResponse for KubeStatus {
    fn into_response(self) -> Response {
        (
            self.code,
            Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code.as_u16()
            })),
        )
            .into_response()
    }
}

pub fn status(code: StatusCode, reason: &'static str, message: &str) -> KubeStatus {
    KubeStatus { code, reason, message: message.to_string() }
}

type ApiResult = Result<Json<Value>, KubeStatus>;

pub fn not_found(kind: &str, name: &str) -> KubeStatus {
    status(StatusCode::NOT_FOUND, "NotFound", &format!("{kind} \"{name}\" not found"))
}

fn conflict(kind: &str, name: &str) -> KubeStatus {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

fn check_configmap(snap: &ClusterSnapshot, ns: &str, name: &str) -> Result<(), KubeStatus> {
    if ns != snap.namespace || name != snap.configmap {
        return Err(not_found("configmaps", name));
    }
    Ok(())
}

fn check_deployment(snap: &ClusterSnapshot, ns: &str, name: &str) -> Result<(), KubeStatus> {
    if ns != snap.namespace || name != snap.deployment {
        return Err(not_found("deployments.apps", name));
    }
    Ok(())
}

fn configmap_json(snap: &ClusterSnapshot) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": snap.configmap,
            "namespace": snap.namespace,
            "resourceVersion": snap.configmap_version.to_string(),
            "uid": "6f1c8a52-0000-4000-8000-feature-flags",
        },
        "data": snap.configmap_data,
    })
}

fn deployment_json(snap: &ClusterSnapshot, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": snap.deployment,
            "namespace": snap.namespace,
            "resourceVersion": snap.deployment_version.to_string(),
            "generation": snap.deployment_version,
        },
        "spec": {
            "replicas": snap.desired_replicas,
            "selector": {"matchLabels": {"app": snap.deployment}},
            "template": {
                "metadata": {"labels": {"app": snap.deployment}},
                "spec": {"containers": [{"name": "writer", "image": "diary-writer:demo"}]}
            }
        },
        "status": deployment_status(snap, ready),
    })
}

/// A Deployment's status as the API server serializes it: counts are `omitempty`, so a zero is
/// absent, not 0 (`readyReplicas` disappears when no pod is ready). `replicas` counts pods, ready
/// or not; `readyReplicas` only the ready ones.
fn deployment_status(snap: &ClusterSnapshot, ready: i32) -> Value {
    let mut status = serde_json::Map::new();
    status.insert("observedGeneration".into(), json!(snap.deployment_version));
    let pods = snap.desired_replicas.max(ready);
    for (k, v) in [
        ("replicas", pods),
        ("updatedReplicas", snap.desired_replicas),
        ("readyReplicas", ready),
        ("availableReplicas", ready),
        ("unavailableReplicas", (pods - ready).max(0)),
    ] {
        if v != 0 {
            status.insert(k.into(), json!(v));
        }
    }
    Value::Object(status)
}

/// A request body as the API server reads it: JSON only (this emulation speaks no YAML or
/// protobuf), anything else answered with a `Status`, never a bare text error.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, KubeStatus> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_like = ct.is_empty() || ct.starts_with("application/json") || ct.contains("patch+json");
    if !json_like {
        return Err(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the body of the request was in an unknown format - accepted media types include: application/json (not {ct:?})"),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        status(StatusCode::BAD_REQUEST, "BadRequest", &format!("the object provided is unrecognized: {e}"))
    })?;
    if !value.is_object() {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the object provided is unrecognized: not a JSON object",
        ));
    }
    Ok(value)
}

fn scale_json(snap: &ClusterSnapshot, ready: i32) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": snap.deployment,
            "namespace": snap.namespace,
            "resourceVersion": snap.deployment_version.to_string(),
        },
        "spec": {"replicas": snap.desired_replicas},
        // `replicas` is omitempty, as in the API server: absent when no pod runs.
        "status": if ready == 0 {
            json!({"selector": format!("app={}", snap.deployment)})
        } else {
            json!({"replicas": ready, "selector": format!("app={}", snap.deployment)})
        }
    })
}

fn parse_version(v: Option<&Value>) -> Result<Option<u64>, KubeStatus> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.parse().map(Some).map_err(|_| status(StatusCode::BAD_REQUEST, "BadRequest", "invalid resourceVersion"))
        }
        Some(_) => Err(status(StatusCode::BAD_REQUEST, "BadRequest", "invalid resourceVersion")),
    }
}

fn string_map(v: Option<&Value>) -> Result<BTreeMap<String, String>, KubeStatus> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| status(StatusCode::BAD_REQUEST, "BadRequest", "data must map strings to strings")),
    }
}

async fn get_configmap(State(world): State<World>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let (snap, _) = world.cluster.snapshot();
    check_configmap(&snap, &ns, &name)?;
    Ok(Json(configmap_json(&snap)))
}

async fn replace_configmap(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult {
    let body = json_body(&headers, &raw)?;
    let (snap, _) = world.cluster.snapshot();
    check_configmap(&snap, &ns, &name)?;
    let expected = parse_version(body.pointer("/metadata/resourceVersion"))?;
    let data = string_map(body.get("data"))?;
    match world.cluster.write_configmap(expected, data) {
        Ok(snap) => Ok(Json(configmap_json(&snap))),
        Err(_) => Err(conflict("configmaps", &name)),
    }
}

fn is_merge_patch(headers: &HeaderMap) -> Result<(), KubeStatus> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/merge-patch+json") || ct.starts_with("application/strategic-merge-patch+json") {
        Ok(())
    } else {
        Err(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the emulated API server supports merge and strategic merge patches, not {ct:?}"),
        ))
    }
}

async fn patch_configmap(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult {
    is_merge_patch(&headers)?;
    let body = json_body(&headers, &raw)?;
    let (snap, _) = world.cluster.snapshot();
    check_configmap(&snap, &ns, &name)?;
    let expected = parse_version(body.pointer("/metadata/resourceVersion"))?;
    // JSON merge patch on `data`: null deletes a key, a string sets it.
    let mut data = snap.configmap_data.clone();
    if let Some(patch) = body.get("data") {
        let Some(obj) = patch.as_object() else {
            return Err(status(StatusCode::BAD_REQUEST, "BadRequest", "data must be an object"));
        };
        for (k, v) in obj {
            match v {
                Value::Null => {
                    data.remove(k);
                }
                Value::String(s) => {
                    data.insert(k.clone(), s.clone());
                }
                _ => return Err(status(StatusCode::BAD_REQUEST, "BadRequest", "data values must be strings")),
            }
        }
    }
    match world.cluster.write_configmap(expected, data) {
        Ok(snap) => Ok(Json(configmap_json(&snap))),
        Err(_) => Err(conflict("configmaps", &name)),
    }
}

async fn get_deployment(State(world): State<World>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let (snap, ready) = world.cluster.snapshot();
    check_deployment(&snap, &ns, &name)?;
    Ok(Json(deployment_json(&snap, ready)))
}

async fn get_scale(State(world): State<World>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let (snap, ready) = world.cluster.snapshot();
    check_deployment(&snap, &ns, &name)?;
    Ok(Json(scale_json(&snap, ready)))
}

fn apply_scale(world: &World, name: &str, body: &Value) -> ApiResult {
    let expected = parse_version(body.pointer("/metadata/resourceVersion"))?;
    let replicas = body
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| status(StatusCode::BAD_REQUEST, "BadRequest", "spec.replicas is required"))?;
    let replicas = i32::try_from(replicas).ok().filter(|r| *r >= 0).ok_or_else(|| {
        status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "spec.replicas: must be greater than or equal to 0")
    })?;
    match world.cluster.scale(expected, replicas) {
        Ok(snap) => Ok(Json(scale_json(&snap, world.cluster.ready_replicas()))),
        Err(_) => Err(conflict("deployments.apps", name)),
    }
}

async fn replace_scale(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult {
    let body = json_body(&headers, &raw)?;
    let (snap, _) = world.cluster.snapshot();
    check_deployment(&snap, &ns, &name)?;
    apply_scale(&world, &name, &body)
}

async fn patch_scale(
    State(world): State<World>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult {
    is_merge_patch(&headers)?;
    let body = json_body(&headers, &raw)?;
    let (snap, _) = world.cluster.snapshot();
    check_deployment(&snap, &ns, &name)?;
    apply_scale(&world, &name, &body)
}
