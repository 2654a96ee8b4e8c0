//! A stand-in for the two LaunchDarkly REST API v2 endpoints rollout-dashboard uses, with the
//! documented shapes:
//! - `GET /api/v2/flags/{projectKey}/{featureFlagKey}?env={environmentKey}`: the flag
//!   representation (`_version`, `variations` with `_id`, `environments.{env}` with `on`,
//!   `offVariation`, `fallthrough.variation` or `fallthrough.rollout.variations[].weight` in
//!   thousandths of a percent, `rules`, `targets`, `version`, `lastModified`);
//! - `PATCH /api/v2/flags/{projectKey}/{featureFlagKey}`: a JSON Patch (RFC 6902), bare or
//!   wrapped as `{"comment": "...", "patch": [...]}`; `test`, `replace`, `add` and `remove`
//!   operations; a failed `test` changes nothing and answers 409 (the spec's "Status conflict": it
//!   lists no other conflict status for this route); an edit of a path with a segment starting
//!   with `_` answers 400 (the spec: such attributes "are not editable").
//! - On demand (`Stub::trouble`): 429 with `X-Ratelimit-Reset`, 405 "Approval is required to make
//!   this request", 400 for a clash with a pending scheduled change. Every request's
//!   `LD-API-Version` is recorded.
//!
//! Access tokens go in the `Authorization` header as they are (no `Bearer` prefix); errors are
//! `{"code": "...", "message": "..."}`. Semantic patch is not emulated: the dashboard does not
//! use it, and the stub answers 415 for it rather than pretending.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::World;

pub struct Stub {
    /// The access token every request must present; None accepts any.
    pub token: Option<String>,
    /// (project, flag key) → the flag representation.
    flags: Mutex<BTreeMap<(String, String), Value>>,
    /// Comments sent with patches, newest last (what LaunchDarkly's audit log would show).
    comments: Mutex<Vec<String>>,
    /// The `LD-API-Version` header of every request, in order ("" when absent).
    pub api_versions: Mutex<Vec<String>>,
    /// How the next requests misbehave, as LaunchDarkly documents it.
    pub trouble: Mutex<Trouble>,
}

/// Answers the stand-in gives on demand, each with the status and body the spec lists.
#[derive(Debug, Default, Clone)]
pub struct Trouble {
    /// The next N requests get 429 with `X-Ratelimit-Reset` this many ms ahead.
    pub rate_limited: u32,
    pub reset_after_ms: i64,
    /// Patches get 405: "Approval is required to make this request".
    pub approval_required: bool,
    /// Patches get 400: they clash with a pending scheduled change.
    pub scheduled_clash: bool,
}

impl Stub {
    pub fn new(token: Option<String>) -> Stub {
        Stub {
            token,
            flags: Mutex::default(),
            comments: Mutex::default(),
            api_versions: Mutex::default(),
            trouble: Mutex::default(),
        }
    }

    /// Records the request's API version; the reset time (epoch ms) of a queued 429, if any.
    fn gate(&self, headers: &HeaderMap) -> Option<i64> {
        let version = headers.get("ld-api-version").and_then(|v| v.to_str().ok()).unwrap_or_default();
        self.api_versions.lock().unwrap().push(version.to_string());
        let mut t = self.trouble.lock().unwrap();
        (t.rate_limited > 0).then(|| {
            t.rate_limited -= 1;
            chrono::Utc::now().timestamp_millis() + t.reset_after_ms
        })
    }

    /// Puts a boolean flag whose default rule in `environment` rolls `true` out to `percentage`.
    pub fn put_boolean_rollout(&self, project: &str, key: &str, environment: &str, percentage: u32) {
        let weight = percentage.min(100) * 1000;
        let flag = json!({
            "name": key,
            "kind": "boolean",
            "key": key,
            "_version": 1,
            "creationDate": 1_764_000_000_000_i64,
            "variations": [
                {"value": true, "name": "split", "_id": "6c0f6e2a-0000-4000-8000-000000000001"},
                {"value": false, "name": "legacy", "_id": "6c0f6e2a-0000-4000-8000-000000000002"}
            ],
            "defaults": {"onVariation": 0, "offVariation": 1},
            "temporary": false,
            "tags": ["diary"],
            "environments": {
                environment: {
                    "on": true,
                    "archived": false,
                    "salt": "7b6d6c9e",
                    "sel": "0",
                    "lastModified": 1_764_000_000_000_i64,
                    "version": 1,
                    "targets": [],
                    "contextTargets": [],
                    "rules": [],
                    "fallthrough": {"rollout": {
                        "variations": [
                            {"variation": 0, "weight": weight},
                            {"variation": 1, "weight": 100_000 - weight}
                        ],
                        "bucketBy": "key",
                        "contextKind": "user"
                    }},
                    "offVariation": 1,
                    "prerequisites": [],
                    "_site": {"href": format!("/default/{environment}/features/{key}"), "type": "text/html"}
                }
            },
            "_links": {"self": {"href": format!("/api/v2/flags/{project}/{key}"), "type": "application/json"}}
        });
        self.put(project, key, flag);
    }

    pub fn put(&self, project: &str, key: &str, flag: Value) {
        self.flags.lock().unwrap().insert((project.into(), key.into()), flag);
    }

    pub fn get(&self, project: &str, key: &str) -> Option<Value> {
        self.flags.lock().unwrap().get(&(project.into(), key.into())).cloned()
    }

    pub fn comments(&self) -> Vec<String> {
        self.comments.lock().unwrap().clone()
    }
}

pub fn router() -> Router<World> {
    Router::new().route("/api/v2/flags/{project}/{key}", get(get_flag).patch(patch_flag))
}

/// LaunchDarkly's error shape: `{"code": "...", "message": "..."}`.
pub struct LdError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for LdError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response()
    }
}

/// 429 as the spec documents it: `X-Ratelimit-Reset` in epoch milliseconds.
fn rate_limited(reset_ms: i64) -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Rate limited").into_response();
    resp.headers_mut().insert("x-ratelimit-reset", reset_ms.into());
    resp.headers_mut().insert("x-ratelimit-route-remaining", 0.into());
    resp
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> LdError {
    LdError { status, code, message: message.into() }
}

fn authorized(stub: &Stub, headers: &HeaderMap) -> Result<(), LdError> {
    match &stub.token {
        None => Ok(()),
        Some(t) if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(t.as_str()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid access token")),
    }
}

#[derive(Deserialize)]
struct GetParams {
    env: Option<String>,
}

async fn get_flag(
    State(world): State<World>,
    Path((project, key)): Path<(String, String)>,
    Query(params): Query<GetParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorized(&world.launchdarkly, &headers) {
        return e.into_response();
    }
    if let Some(reset) = world.launchdarkly.gate(&headers) {
        return rate_limited(reset);
    }
    let Some(mut flag) = world.launchdarkly.get(&project, &key) else {
        return error(StatusCode::NOT_FOUND, "not_found", "Unknown resource").into_response();
    };
    if let (Some(env), Some(envs)) = (params.env, flag.get_mut("environments").and_then(Value::as_object_mut)) {
        envs.retain(|k, _| *k == env);
    }
    Json(flag).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PatchBody {
    Wrapped { comment: Option<String>, patch: Vec<PatchOp> },
    Bare(Vec<PatchOp>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOp {
    op: String,
    path: String,
    value: Option<Value>,
}

async fn patch_flag(
    State(world): State<World>,
    Path((project, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stub = &world.launchdarkly;
    if let Err(e) = authorized(stub, &headers) {
        return e.into_response();
    }
    if let Some(reset) = stub.gate(&headers) {
        return rate_limited(reset);
    }
    patch_checked(stub, project, key, &headers, &body).into_response()
}

fn patch_checked(
    stub: &Stub,
    project: String,
    key: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, LdError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("domain-model=launchdarkly.semanticpatch") {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "semantic patch is not emulated",
        ));
    }
    if !content_type.starts_with("application/json") {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "expected application/json"));
    }
    let (comment, ops) = match serde_json::from_slice::<PatchBody>(body) {
        Ok(PatchBody::Wrapped { comment, patch }) => (comment, patch),
        Ok(PatchBody::Bare(patch)) => (None, patch),
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, "invalid_request", format!("invalid JSON patch: {e}"))),
    };
    // "Attributes that are not editable, such as a resource's `_links`, have names that start with
    // an underscore." A test reads and edits nothing, so it may name one.
    if let Some(op) = ops.iter().find(|o| o.op != "test" && o.path.split('/').any(|seg| seg.starts_with('_'))) {
        return Err(error(StatusCode::BAD_REQUEST, "invalid_request", format!("{} is not editable", op.path)));
    }
    let trouble = stub.trouble.lock().unwrap().clone();
    if trouble.approval_required && ops.iter().any(|o| o.op != "test") {
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Approval is required to make this request",
        ));
    }
    if trouble.scheduled_clash && ops.iter().any(|o| o.op != "test") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "this change conflicts with a pending scheduled change; pass ignoreConflicts=true to apply it anyway",
        ));
    }
    let mut flags = stub.flags.lock().unwrap();
    let Some(stored) = flags.get_mut(&(project, key)) else {
        return Err(error(StatusCode::NOT_FOUND, "not_found", "Unknown resource"));
    };
    let mut draft = stored.clone();
    let mut touched_envs = Vec::new();
    for op in &ops {
        apply(&mut draft, op)?;
        if op.op != "test" {
            if let Some(env) = op.path.strip_prefix("/environments/").and_then(|r| r.split('/').next()) {
                // One new version per patch and environment, however many operations touch it.
                if !touched_envs.iter().any(|e| e == env) {
                    touched_envs.push(env.to_string());
                }
            }
        }
    }
    if ops.iter().any(|o| o.op != "test") {
        let now = chrono::Utc::now().timestamp_millis();
        let version = draft["_version"].as_i64().unwrap_or(0) + 1;
        draft["_version"] = version.into();
        for env in touched_envs {
            if let Some(e) = draft.pointer_mut(&format!("/environments/{env}")) {
                e["version"] = (e["version"].as_i64().unwrap_or(0) + 1).into();
                e["lastModified"] = now.into();
            }
        }
        *stored = draft.clone();
        if let Some(c) = comment {
            stub.comments.lock().unwrap().push(c);
        }
    }
    Ok(Json(draft))
}

fn apply(doc: &mut Value, op: &PatchOp) -> Result<(), LdError> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid_request", m);
    match op.op.as_str() {
        "test" => {
            let want = op.value.as_ref().ok_or_else(|| bad("test needs a value".into()))?;
            match doc.pointer(&op.path) {
                Some(have) if have == want => Ok(()),
                have => Err(error(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("test failed at {}: expected {want}, found {}", op.path, have.unwrap_or(&Value::Null)),
                )),
            }
        }
        "replace" => {
            let value = op.value.clone().ok_or_else(|| bad("replace needs a value".into()))?;
            let slot = doc.pointer_mut(&op.path).ok_or_else(|| bad(format!("no value at {}", op.path)))?;
            *slot = value;
            Ok(())
        }
        "add" | "remove" => {
            let (parent, last) = op.path.rsplit_once('/').ok_or_else(|| bad(format!("bad path {}", op.path)))?;
            let target = doc.pointer_mut(parent).ok_or_else(|| bad(format!("no value at {parent}")))?;
            match (op.op.as_str(), target) {
                ("add", Value::Object(m)) => {
                    m.insert(last.to_string(), op.value.clone().ok_or_else(|| bad("add needs a value".into()))?);
                }
                ("add", Value::Array(a)) => {
                    let v = op.value.clone().ok_or_else(|| bad("add needs a value".into()))?;
                    if last == "-" {
                        a.push(v);
                    } else {
                        let i: usize = last.parse().map_err(|_| bad(format!("bad index {last}")))?;
                        if i > a.len() {
                            return Err(bad(format!("index {i} out of range")));
                        }
                        a.insert(i, v);
                    }
                }
                ("remove", Value::Object(m)) => {
                    m.remove(last).ok_or_else(|| bad(format!("no value at {}", op.path)))?;
                }
                ("remove", Value::Array(a)) => {
                    let i: usize = last.parse().map_err(|_| bad(format!("bad index {last}")))?;
                    if i >= a.len() {
                        return Err(bad(format!("index {i} out of range")));
                    }
                    a.remove(i);
                }
                _ => return Err(bad(format!("cannot {} at {}", op.op, op.path))),
            }
            Ok(())
        }
        other => Err(bad(format!("unsupported op {other:?}"))),
    }
}
