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
        .route("/api/v1/me", get(me))
        .route("/api/v1/rollout", get(rollout_state).post(rollout_set))
        .route("/api/v1/rollout/kill", axum::routing::post(rollout_kill))
        .route("/api/v1/audit", get(audit_json))
        .route("/api/v1/audit.csv", get(audit_csv))
        .route("/api/v1/rollback", get(rollback_latest).post(rollback_start))
        .route("/api/v1/rollback/plan", axum::routing::post(rollback_plan))
        .route("/api/v1/rollback/{id}", get(rollback_get))
        .route("/api/v1/rollback/{id}/{action}", axum::routing::post(rollback_act))
        .route("/api/v1/incidents/{file}", get(incident_md))
        .route("/api/v1/deploys", get(deploys_list).post(deploys_record))
        .route("/api/v1/reports/{file}", get(report_file))
        // Control requests are small; a huge body is refused before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .route("/auth/login", axum::routing::post(login))
        .route("/auth/logout", axum::routing::post(logout))
}

/// A control request's JSON body. Bodies whose every field is optional may be left out.
trait ControlBody: serde::de::DeserializeOwned {
    fn when_empty() -> Option<Self> {
        None
    }
}
impl ControlBody for crate::api::rollout::SetPercentage {}
impl ControlBody for crate::api::rollout::KillSwitch {}
impl ControlBody for crate::api::rollback::StartRollback {}
impl ControlBody for crate::api::rollback::NewDeploy {}
impl ControlBody for crate::api::rollback::PlanRequest {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }
}
impl ControlBody for crate::api::rollback::RunActionBody {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }
}

/// A fresh id for one request, returned in `x-request-id` and kept in the audit trail.
fn request_id() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    format!("{:016x}", OsRng.next_u64())
}

/// A JSON body that could not be taken, as our own error.
fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("the request body is too large (16 KiB at most)".into())
    } else {
        ApiError::BadRequest(format!("bad request body: {}", e.body_text()))
    }
}

/// `limit`: a whole number from 1 to `max`, `default` when absent.
fn limit_param(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit: {l:?} is not a whole number from 1 to {max}"))),
    }
}

fn audit_params(q: Result<Query<Params>, QueryRejection>) -> Result<(i64, Option<String>), ApiError> {
    let p = params(q)?;
    let limit = limit_param(p.limit.as_deref(), 200, 10_000)?;
    if let Some(a) = &p.action {
        if a.is_empty() || a.len() > 64 || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            return Err(ApiError::BadRequest(format!("action: {a:?} is not an action name")));
        }
    }
    Ok((limit, p.action))
}

async fn audit_json(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (limit, action) = audit_params(q)?;
    Ok(Json(super::audit::list(&state.state_db, limit, action.as_deref()).await.map_err(ApiError::Unavailable)?))
}

async fn audit_csv(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (limit, action) = audit_params(q)?;
    let entries = super::audit::list(&state.state_db, limit, action.as_deref()).await.map_err(ApiError::Unavailable)?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"rollout-audit.csv\""),
        ],
        super::audit::to_csv(&entries),
    ))
}

async fn rollout_state(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(super::rollout::current(&state).await.map_err(ApiError::Unavailable)?))
}

/// Runs a control action with the caller's identity and the parsed body, answering with the
/// request id either way.
async fn control<T, R, F, Fut>(state: AppState, req: axum::extract::Request, act: F) -> axum::response::Response
where
    T: ControlBody,
    R: serde::Serialize,
    F: FnOnce(AppState, Option<crate::api::auth::Identity>, Result<T, ApiError>, String) -> Fut,
    Fut: std::future::Future<Output = Result<R, ApiError>>,
{
    use axum::extract::FromRequest;
    let (parts, body) = req.into_parts();
    let who = state.auth.identify(&state.state_db, &parts.headers, peer(&parts.extensions)).await;
    let id = request_id();
    let body = match axum::body::to_bytes(body, 16 * 1024).await {
        Err(_) => Err(ApiError::TooLarge("the request body is too large (16 KiB at most)".into())),
        Ok(bytes) => match (bytes.is_empty(), T::when_empty()) {
            (true, Some(b)) => Ok(b),
            _ => Json::<T>::from_request(
                axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)),
                &state,
            )
            .await
            .map(|Json(b)| b)
            .map_err(json_rejection),
        },
    };
    let mut resp = match act(state, who, body, id.clone()).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn rollout_set(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    control(state, req, |state, who, body, id| async move {
        super::rollout::set_percentage(&state, who.as_ref(), body, &id).await
    })
    .await
}

async fn rollout_kill(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    control(state, req, |state, who, body: Result<crate::api::rollout::KillSwitch, ApiError>, id| async move {
        match body {
            Ok(b) => super::rollout::kill(&state, who.as_ref(), b.reason, &id).await,
            Err(e) => super::rollout::refuse(&state, who.as_ref(), "flag.kill", e, &id).await,
        }
    })
    .await
}

/// CSRF: a state-changing request from another origin is refused before it reaches a handler.
pub async fn refuse_cross_origin(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.auth.same_origin(req.method(), req.headers()) {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused a cross-origin state-changing request");
    ApiError::Forbidden(
        "cross-origin request refused: state-changing requests must come from the dashboard's own pages".into(),
    )
    .into_response()
}

/// The client's address, when the server knows it (not in in-process tests).
pub fn peer(req_ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    req_ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The identity a request carries, or 401.
pub async fn identity(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<crate::api::auth::Identity, ApiError> {
    state
        .auth
        .identify(&state.state_db, &parts.headers, peer(&parts.extensions))
        .await
        .ok_or_else(|| ApiError::Unauthenticated("sign in first: this request carries no identity".into()))
}

async fn me(State(state): State<AppState>, req: axum::extract::Request) -> Result<impl IntoResponse, ApiError> {
    let (parts, _) = req.into_parts();
    Ok(Json(identity(&state, &parts).await?))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Only local paths, so the login form cannot be used to send people elsewhere.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

async fn login(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    use axum::extract::FromRequest;
    let client = peer(req.extensions());
    let form = match axum::Form::<LoginForm>::from_request(req, &state).await {
        Ok(axum::Form(f)) => f,
        Err(e) => return ApiError::BadRequest(format!("bad login form: {}", e.body_text())).into_response(),
    };
    login_as(&state, client, form).await
}

async fn login_as(state: &AppState, client: Option<std::net::IpAddr>, form: LoginForm) -> axum::response::Response {
    use axum::http::header::{LOCATION, SET_COOKIE};
    let next = local_path(form.next.as_deref());
    match state.auth.login(&state.state_db, form.username.trim(), &form.password, client).await {
        Ok((token, who)) => {
            tracing::info!(user = %who.user, role = who.role.as_str(), "signed in");
            (StatusCode::SEE_OTHER, [(SET_COOKIE, state.auth.session_cookie(Some(&token))), (LOCATION, next)])
                .into_response()
        }
        Err(e) => {
            tracing::warn!(user = %form.username.chars().take(64).collect::<String>(), "sign-in refused: {e}");
            let code = match e {
                super::auth::LoginError::TooMany => "too_many",
                super::auth::LoginError::Wrong => "wrong",
                super::auth::LoginError::Unavailable(_) => "unavailable",
            };
            let status = if code == "too_many" { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::SEE_OTHER };
            (status, [(LOCATION, format!("/login?error={code}"))]).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    use axum::http::header::{LOCATION, SET_COOKIE};
    state.auth.logout(&state.state_db, &headers).await;
    (StatusCode::SEE_OTHER, [(SET_COOKIE, state.auth.session_cookie(None)), (LOCATION, "/".to_string())])
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
    action: Option<String>,
    width: Option<String>,
    height: Option<String>,
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
    let limit = limit_param(p.limit.as_deref(), 20, 1000)?;
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

// ---------------------------------------------------------------- rollback

use super::rollback::Service as Rollback;

async fn rollback_plan(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    control(state, req, |state, _who, body, _id| async move { Rollback::new(&state).plan_request(body).await }).await
}

async fn rollback_start(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    control(
        state,
        req,
        |state, who, body, id| async move { Rollback::new(&state).start(who.as_ref(), body, &id).await },
    )
    .await
}

async fn rollback_latest(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Rollback::new(&state).latest_run().await?))
}

fn run_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::BadRequest(format!("{raw:?} is not a run id")))
}

async fn rollback_get(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Rollback::new(&state).run(run_id(&id)?).await?))
}

async fn rollback_act(
    State(state): State<AppState>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let parsed = run_id(&id).and_then(|id| {
        crate::api::rollback::RunAction::parse(&action)
            .map(|a| (id, a))
            .ok_or_else(|| ApiError::NotFound(format!("{action:?} is not an action (retry, skip, abort, approve)")))
    });
    let (id, action) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    control(state, req, move |state, who, body, rid| async move {
        Rollback::new(&state).act(who.as_ref(), id, action, body, &rid).await
    })
    .await
}

async fn incident_md(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
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

async fn deploys_list(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Rollback::new(&state).deploys(200).await?))
}

async fn deploys_record(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    control(state, req, |state, who, body, id| async move {
        Rollback::new(&state).record_deploy(who.as_ref(), body, &id).await
    })
    .await
}

// ---------------------------------------------------------------- reports

/// A pixel size from 200 to 4000, `default` when absent.
fn size_param(name: &str, value: Option<&str>, default: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse::<u32>().ok().filter(|n| (200..=4000).contains(n)).ok_or_else(|| {
            ApiError::BadRequest(format!("{name}: {v:?} is not a whole number of pixels from 200 to 4000"))
        }),
    }
}

/// `GET /api/v1/reports/{chart}.svg|.png|.csv?range=30d` (and `width`, `height` for images).
async fn report_file(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use super::reports::{build, ReportKind, REPORT_SIZE};
    let p = params(q)?;
    let (name, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| ApiError::NotFound(format!("{file:?}: ask for <chart>.svg, .png or .csv")))?;
    let kind = ReportKind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = ReportKind::ALL.iter().map(|k| k.slug()).collect();
        ApiError::NotFound(format!("there is no report chart {name:?} (one of {})", all.join(", ")))
    })?;
    if !matches!(ext, "svg" | "png" | "csv") {
        return Err(ApiError::NotFound(format!("{ext:?} is not a report format (svg, png, csv)")));
    }
    let range = window_param("range", p.range.as_deref(), "7d")?;
    let size = (
        size_param("width", p.width.as_deref(), REPORT_SIZE.0)?,
        size_param("height", p.height.as_deref(), REPORT_SIZE.1)?,
    );
    let report = build(&state, kind, range).await.map_err(ApiError::Unavailable)?;
    let filename = format!("{}-{range}.{ext}", kind.slug());
    let disposition = format!("attachment; filename=\"{filename}\"");
    let (content_type, body): (&str, Vec<u8>) = match ext {
        "svg" => ("image/svg+xml", super::charts::draw_svg(&report.chart, size).svg.into_bytes()),
        "png" => ("image/png", super::charts::draw_png(&report.chart, size).map_err(ApiError::Failed)?),
        _ => ("text/csv; charset=utf-8", super::charts::to_csv(&report.chart).into_bytes()),
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- caching

/// `Cache-Control` for what leaves the server. Built assets under `/pkg/` carry content hashes in
/// their names when the site is built with `hash-files` (a new build means new names), so they are
/// cached for a year and never revalidated; without hashes they must be revalidated. Other static
/// files (the icon) are cached for an hour. Pages, JSON, reports and everything else are not
/// stored: they hold live values and the signed-in user.
pub fn cache_control(path: &str, hashed_assets: bool, is_static_file: bool) -> &'static str {
    if path.starts_with("/pkg/") {
        if hashed_assets {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }
    } else if is_static_file {
        "public, max-age=3600"
    } else {
        "no-store"
    }
}

pub async fn cache_headers(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    if resp.headers().contains_key(header::CACHE_CONTROL) {
        return resp;
    }
    let ok = resp.status().is_success() || resp.status() == axum::http::StatusCode::NOT_MODIFIED;
    let is_static_file = ok
        && !path.starts_with("/api/")
        && std::path::Path::new(&path)
            .extension()
            .is_some_and(|e| matches!(e.to_str(), Some("svg" | "ico" | "png" | "txt")));
    let value = if ok { cache_control(&path, state.leptos_options.hash_files, is_static_file) } else { "no-store" };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}

#[cfg(test)]
mod tests {
    use super::cache_control;

    #[test]
    fn hashed_assets_are_immutable_and_live_answers_are_not_stored() {
        assert_eq!(
            cache_control("/pkg/rollout-dashboard.abc123.wasm", true, true),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cache_control("/pkg/rollout-dashboard.wasm", false, true), "no-cache");
        assert_eq!(cache_control("/favicon.svg", true, true), "public, max-age=3600");
        assert_eq!(cache_control("/", true, false), "no-store");
        assert_eq!(cache_control("/api/v1/status", true, false), "no-store");
    }
}
