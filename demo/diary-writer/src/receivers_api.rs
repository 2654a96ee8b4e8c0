//! Stand-ins for the receivers the dashboard notifies: a generic webhook, a Slack incoming
//! webhook and Grafana's annotations API. Each checks the request shape its documentation gives,
//! records every request with the answer it gave, and fails on demand, so that the demo shows
//! what was sent and the tests prove retries, order and "nothing lost, nothing twice":
//! - `POST /stand-ins/webhook/{name}`: any JSON object with `id` and `event` (ours, README).
//! - `POST /stand-ins/slack/{name}`: Slack's incoming webhook: `text`, or `blocks` whose every
//!   block has a `type`; a header's text at most 150 characters, a section at most 10 fields of
//!   at most 2,000. Slack answers `200 ok`, and `400 invalid_blocks` or `400 no_text`.
//! - `POST /stand-ins/grafana/api/annotations` and `PATCH .../api/annotations/{id}`: Grafana's
//!   HTTP API (a Bearer token; `text` required; `time`/`timeEnd` in epoch milliseconds; `tags`
//!   strings). It answers `{"message":"Annotation added","id":N}` and `{"message":"Annotation patched"}`.
//! - `POST /stand-ins/faults {"target":"slack","mode":"500|429|hang|down","count":2,"for_secs":60}`
//!   queues a fault; `GET /stand-ins/received?target=slack` lists what came; `GET /stand-ins`
//!   shows it all as a page.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::World;

/// One request a stand-in got, and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub target: String,
    pub path: String,
    pub at: String,
    pub status: u16,
    /// The headers a receiver reads: the signature, event, delivery id and authorization.
    pub headers: BTreeMap<String, String>,
    /// The body exactly as sent (a signature is computed over these bytes).
    pub raw: String,
    pub body: Value,
}

impl Received {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// 500 Internal Server Error.
    #[serde(rename = "500")]
    ServerError,
    /// 429 Too Many Requests with `Retry-After: retry_after_secs`.
    #[serde(rename = "429")]
    TooMany,
    /// No answer for 60 s (the sender's timeout is shorter).
    Hang,
    /// 503 as from a proxy in front of a receiver that is down.
    Down,
    /// 401: the receiver no longer takes our token (it was revoked or rotated).
    #[serde(rename = "401")]
    Unauthorized,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Fault {
    /// `webhook`, `slack` or `grafana`.
    pub target: String,
    pub mode: FaultMode,
    /// For this many requests (default: one), or
    #[serde(default)]
    pub count: Option<u32>,
    /// for this long, whichever is given.
    #[serde(default)]
    pub for_secs: Option<u64>,
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

struct Queued {
    fault: Fault,
    left: Option<u32>,
    until: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    got: Vec<Received>,
    faults: BTreeMap<String, VecDeque<Queued>>,
    annotations: BTreeMap<i64, Value>,
}

/// Every stand-in receiver's record. `grafana_token`: the token Grafana demands (None: any).
#[derive(Default)]
pub struct StandIns {
    inner: Mutex<Inner>,
    pub grafana_token: Option<String>,
}

impl StandIns {
    pub fn new(grafana_token: Option<String>) -> StandIns {
        StandIns { grafana_token, ..Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_fault(&self, fault: Fault) {
        let q = Queued {
            left: fault.count.or(if fault.for_secs.is_some() { None } else { Some(1) }),
            until: fault.for_secs.map(|s| Instant::now() + Duration::from_secs(s)),
            fault,
        };
        self.lock().faults.entry(q.fault.target.clone()).or_default().push_back(q);
    }

    /// The fault the next request to `target` meets, if any (used up as it goes).
    fn take_fault(&self, target: &str) -> Option<Fault> {
        let mut g = self.lock();
        let queue = g.faults.get_mut(target)?;
        while let Some(front) = queue.front_mut() {
            let expired = front.until.is_some_and(|u| Instant::now() >= u) || front.left == Some(0);
            if expired {
                queue.pop_front();
                continue;
            }
            if let Some(n) = front.left.as_mut() {
                *n -= 1;
            }
            return Some(front.fault.clone());
        }
        None
    }

    /// What `target` got (every request, with the status it answered).
    pub fn received(&self, target: Option<&str>) -> Vec<Received> {
        self.lock().got.iter().filter(|r| target.is_none_or(|t| r.target == t)).cloned().collect()
    }

    fn record(&self, target: &str, path: String, headers: &HeaderMap, raw: String, status: u16) {
        let keep = ["authorization", "content-type", "x-rollout-event", "x-rollout-delivery", "x-rollout-signature"];
        let headers =
            keep.iter().filter_map(|k| Some((k.to_string(), headers.get(*k)?.to_str().ok()?.to_string()))).collect();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.lock().got.push(Received { target: target.into(), path, at, status, headers, raw, body });
    }
}

pub fn router() -> Router<World> {
    Router::new()
        .route("/stand-ins", get(page))
        .route("/stand-ins/received", get(received))
        .route("/stand-ins/faults", post(add_fault))
        .route("/stand-ins/webhook/{name}", post(webhook))
        .route("/stand-ins/slack/{name}", post(slack))
        .route("/stand-ins/grafana/api/annotations", post(grafana_add))
        .route("/stand-ins/grafana/api/annotations/{id}", patch(grafana_patch))
}

async fn add_fault(State(w): State<World>, Json(f): Json<Fault>) -> Response {
    if !["webhook", "slack", "grafana"].contains(&f.target.as_str()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "target is webhook, slack or grafana"})))
            .into_response();
    }
    w.receivers.add_fault(f.clone());
    Json(json!({"queued": f})).into_response()
}

#[derive(Deserialize)]
struct Which {
    target: Option<String>,
}

async fn received(State(w): State<World>, Query(q): Query<Which>) -> Json<Vec<Received>> {
    Json(w.receivers.received(q.target.as_deref()))
}

/// Answers one request: the queued fault if any, else `check`'s verdict; records it either way.
async fn answer(
    w: &World,
    target: &str,
    path: String,
    headers: &HeaderMap,
    raw: String,
    check: impl FnOnce(&Value) -> Result<(StatusCode, Value), (StatusCode, Value)>,
) -> Response {
    let (status, body, retry_after) = match w.receivers.take_fault(target) {
        Some(f) => match f.mode {
            FaultMode::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, json!("injected 500"), None),
            FaultMode::TooMany => {
                (StatusCode::TOO_MANY_REQUESTS, json!("rate limited"), f.retry_after_secs.or(Some(1)))
            }
            FaultMode::Down => (StatusCode::SERVICE_UNAVAILABLE, json!("receiver down"), None),
            FaultMode::Unauthorized => (StatusCode::UNAUTHORIZED, json!("invalid_token"), None),
            FaultMode::Hang => {
                w.receivers.record(target, path, headers, raw, 0);
                tokio::time::sleep(Duration::from_secs(60)).await;
                return StatusCode::GATEWAY_TIMEOUT.into_response();
            }
        },
        None => {
            let parsed: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let (s, b) = check(&parsed).unwrap_or_else(|e| e);
            (s, b, None)
        }
    };
    w.receivers.record(target, path, headers, raw, status.as_u16());
    let mut resp = match body {
        Value::String(s) => (status, s).into_response(),
        other => (status, Json(other)).into_response(),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

async fn webhook(State(w): State<World>, Path(name): Path<String>, headers: HeaderMap, raw: String) -> Response {
    answer(&w, "webhook", format!("/stand-ins/webhook/{name}"), &headers, raw, |b| {
        if b["id"].is_i64() && b["event"].is_string() {
            Ok((StatusCode::NO_CONTENT, json!("")))
        } else {
            Err((StatusCode::BAD_REQUEST, json!({"error": "expected a JSON object with id and event"})))
        }
    })
    .await
}

/// Slack's checks (api.slack.com/messaging/webhooks: `400 no_text`, `400 invalid_blocks`).
pub fn slack_check(b: &Value) -> Result<(), &'static str> {
    let blocks = b.get("blocks");
    if !b["text"].is_string() && blocks.is_none() {
        return Err("no_text");
    }
    let Some(blocks) = blocks else { return Ok(()) };
    let blocks = blocks.as_array().ok_or("invalid_blocks")?;
    for block in blocks {
        match block["type"].as_str() {
            Some("header") if block["text"]["text"].as_str().is_some_and(|t| t.chars().count() <= 150) => {}
            Some("section") => {
                let fields = block["fields"].as_array().map(Vec::as_slice).unwrap_or_default();
                let fits = |f: &Value| f["text"].as_str().is_some_and(|t| t.chars().count() <= 2000);
                if fields.len() > 10 || !fields.iter().all(fits) {
                    return Err("invalid_blocks");
                }
            }
            Some("context" | "divider") => {}
            _ => return Err("invalid_blocks"),
        }
    }
    Ok(())
}

async fn slack(State(w): State<World>, Path(name): Path<String>, headers: HeaderMap, raw: String) -> Response {
    answer(&w, "slack", format!("/stand-ins/slack/{name}"), &headers, raw, |b| match slack_check(b) {
        Ok(()) => Ok((StatusCode::OK, json!("ok"))),
        Err(why) => Err((StatusCode::BAD_REQUEST, json!(why))),
    })
    .await
}

fn grafana_auth(w: &World, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (presented, &w.receivers.grafana_token) {
        (Some(p), Some(t)) if p == t => Ok(()),
        (Some(p), None) if !p.is_empty() => Ok(()),
        _ => Err((StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"}))),
    }
}

/// Grafana's annotation fields: `text` (required), `time`/`timeEnd` (epoch ms), `tags` (strings).
pub fn grafana_check(b: &Value) -> Result<(), &'static str> {
    if b["text"].as_str().is_none_or(|t| t.is_empty()) {
        return Err("text is required");
    }
    let ms = |k: &str| b.get(k).is_none_or(|v| v.as_i64().is_some_and(|t| t > 1_000_000_000_000));
    if !ms("time") || !ms("timeEnd") {
        return Err("time and timeEnd are epoch milliseconds");
    }
    if !b.get("tags").is_none_or(|t| t.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        return Err("tags are strings");
    }
    Ok(())
}

async fn grafana_add(State(w): State<World>, headers: HeaderMap, raw: String) -> Response {
    let auth = grafana_auth(&w, &headers);
    let path = "/stand-ins/grafana/api/annotations".to_string();
    let store = w.clone();
    answer(&w, "grafana", path, &headers, raw, move |b| {
        auth?;
        grafana_check(b).map_err(|why| (StatusCode::BAD_REQUEST, json!({"message": why})))?;
        let mut g = store.receivers.lock();
        let id = g.annotations.len() as i64 + 1;
        g.annotations.insert(id, b.clone());
        Ok((StatusCode::OK, json!({"message": "Annotation added", "id": id})))
    })
    .await
}

async fn grafana_patch(State(w): State<World>, Path(id): Path<i64>, headers: HeaderMap, raw: String) -> Response {
    let auth = grafana_auth(&w, &headers);
    let path = format!("/stand-ins/grafana/api/annotations/{id}");
    let store = w.clone();
    answer(&w, "grafana", path, &headers, raw, move |b| {
        auth?;
        let mut g = store.receivers.lock();
        let Some(existing) = g.annotations.get_mut(&id) else {
            return Err((StatusCode::NOT_FOUND, json!({"message": "Annotation not found"})));
        };
        let Some(patch) = b.as_object() else {
            return Err((StatusCode::BAD_REQUEST, json!({"message": "bad request data"})));
        };
        for (k, v) in patch {
            existing[k] = v.clone();
        }
        Ok((StatusCode::OK, json!({"message": "Annotation patched"})))
    })
    .await
}

/// Everything received, newest first, as a page (the demo's "what did Slack and Grafana get").
async fn page(State(w): State<World>) -> Html<String> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut rows = String::new();
    for r in w.receivers.received(None).iter().rev() {
        let what = match r.target.as_str() {
            "slack" => r.body["text"].as_str().unwrap_or_default().to_string(),
            "grafana" => r.body["text"]
                .as_str()
                .map(|t| t.lines().next().unwrap_or_default().to_string())
                .unwrap_or_else(|| format!("region closed at {}", r.body["timeEnd"])),
            _ => format!("{} #{}", r.body["event"].as_str().unwrap_or_default(), r.body["id"]),
        };
        let tags = r.body["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.target,
            esc(&r.at),
            esc(&r.target),
            r.status,
            esc(&what),
            esc(&tags)
        ));
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Receiver stand-ins</title>\
         <style>body{{font:14px system-ui;margin:2em}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}}</style>\
         <h1>What the receiver stand-ins got</h1><p>Slack, Grafana and the webhook as the demo world's dashboard notifies them (newest first).</p>\
         <table><tr><th>at</th><th>receiver</th><th>answer</th><th>message</th><th>tags</th></tr>{rows}</table>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_grafana_shapes_are_checked_as_documented() {
        assert_eq!(slack_check(&json!({})), Err("no_text"));
        assert_eq!(slack_check(&json!({"text": "hi"})), Ok(()));
        assert_eq!(slack_check(&json!({"text": "hi", "blocks": [{"text": "no type"}]})), Err("invalid_blocks"));
        let long = "x".repeat(151);
        let header = json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": long}}]});
        assert_eq!(slack_check(&header), Err("invalid_blocks"));
        assert_eq!(grafana_check(&json!({"time": 1})), Err("text is required"));
        assert_eq!(
            grafana_check(&json!({"text": "a", "time": 1_764_000_000})),
            Err("time and timeEnd are epoch milliseconds")
        );
        assert_eq!(grafana_check(&json!({"text": "a", "time": 1_764_000_000_000i64, "tags": ["x"]})), Ok(()));
    }

    #[test]
    fn faults_are_used_up_in_order() {
        let s = StandIns::default();
        let f = |mode, count| Fault { target: "slack".into(), mode, count, for_secs: None, retry_after_secs: None };
        s.add_fault(f(FaultMode::ServerError, Some(2)));
        s.add_fault(f(FaultMode::TooMany, None));
        let modes: Vec<Option<FaultMode>> = (0..4).map(|_| s.take_fault("slack").map(|f| f.mode)).collect();
        assert_eq!(modes, [Some(FaultMode::ServerError), Some(FaultMode::ServerError), Some(FaultMode::TooMany), None]);
        assert!(s.take_fault("grafana").is_none());
    }
}
