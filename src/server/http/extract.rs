//! What handlers take from a request, with the API's own rejections: the caller (identity and
//! request id), a signed-in identity, a control request's JSON body, the query parameters; and
//! the one shape a CSV download answers with.

use axum::extract::{FromRequest, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;

use crate::api::auth::Identity;
use crate::api::window::Window;
use crate::server::caller::Caller;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Control requests are small; a larger body is refused before it is read.
pub const BODY_LIMIT: usize = 16 * 1024;

/// This request's id: made by [`request_id`], returned in `x-request-id`, kept in the audit trail.
#[derive(Clone)]
struct RequestId(String);

/// Gives every API request a fresh id, and its response the `x-request-id` header.
pub async fn request_id(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = fresh_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn fresh_request_id() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    format!("{:016x}", OsRng.next_u64())
}

/// The client's address, when the server knows it (not in in-process tests).
pub fn peer(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// Who sent a request (nobody, when it carries no valid identity).
pub async fn identify(state: &AppState, parts: &Parts) -> Option<Identity> {
    state.auth.identify(&state.state_db, &state.services.state_db, &parts.headers, peer(&parts.extensions)).await
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_else(fresh_request_id);
        Ok(Caller::new(identify(state, parts).await, id))
    }
}

/// A signed-in person, or 401.
pub struct SignedIn(pub Identity);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        identify(state, parts)
            .await
            .map(SignedIn)
            .ok_or_else(|| ApiError::Unauthenticated("sign in first: this request carries no identity".into()))
    }
}

/// A control request's JSON body. Bodies whose every field is optional may be left out.
pub trait ControlBody: serde::de::DeserializeOwned {
    fn when_empty() -> Option<Self> {
        None
    }
}
impl ControlBody for crate::api::rollout::SetPercentage {}
/// A bare `POST /api/v1/rollout/kill` (no body, as on-call types it in a hurry) kills.
impl ControlBody for crate::api::rollout::KillSwitch {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }
}
impl ControlBody for crate::api::rollback::StartRollback {}
impl ControlBody for crate::api::rollback::NewDeploy {}
impl ControlBody for crate::api::rollback::RollForward {}
impl ControlBody for crate::api::rehearsal::StartRehearsal {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }
}
impl ControlBody for crate::api::notify::Resend {}
impl ControlBody for crate::api::autopilot::StartPlan {}
impl ControlBody for crate::api::autopilot::PlanActionBody {
    fn when_empty() -> Option<Self> {
        Some(Self::default())
    }
}
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

/// A control body, parsed; its rejection is the API's 400 or 413. Handlers that must audit a
/// refused attempt take `Result<Body<T>, ApiError>`.
pub struct Body<T>(pub T);

impl<T: ControlBody> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let too_large = || ApiError::TooLarge("the request body is too large (16 KiB at most)".into());
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| too_large())?;
        if let (true, Some(b)) = (bytes.is_empty(), T::when_empty()) {
            return Ok(Body(b));
        }
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        match Json::<T>::from_request(req, state).await {
            Ok(Json(b)) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError::BadRequest(format!("bad request body: {}", e.body_text()))),
        }
    }
}

/// Query parameters, all optional strings so that every bad value gets our own 400 message.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub window: Option<String>,
    pub range: Option<String>,
    pub step: Option<String>,
    pub limit: Option<String>,
    pub action: Option<String>,
    pub width: Option<String>,
    pub height: Option<String>,
    /// `patients=yes`: an export carries user ids (signed-in callers only).
    pub patients: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Params>::from_request_parts(parts, state)
            .await
            .map(|Query(p)| p)
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
    }
}

/// A window parameter, `default` when absent.
/// A window parameter, snapped up to one of `window::SNAPS` (the answer is for that window).
pub fn window_param(name: &str, value: Option<&str>, default: &str) -> Result<Window, ApiError> {
    value
        .unwrap_or(default)
        .parse::<Window>()
        .map(Window::snapped)
        .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
}

/// `limit`: a whole number from 1 to `max`, `default` when absent.
pub fn limit_param(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit: {l:?} is not a whole number from 1 to {max}"))),
    }
}

/// The largest image side served: a 2400 × 2400 PNG is 17 MB of pixels while it is drawn.
pub const MAX_PIXELS: u32 = 2400;

/// A pixel size from 200 to `MAX_PIXELS`, `default` when absent.
pub fn size_param(name: &str, value: Option<&str>, default: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse::<u32>().ok().filter(|n| (200..=MAX_PIXELS).contains(n)).ok_or_else(|| {
            ApiError::BadRequest(format!("{name}: {v:?} is not a whole number of pixels from 200 to {MAX_PIXELS}"))
        }),
    }
}

/// A run id: a positive whole number.
pub fn run_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::BadRequest(format!("{raw:?} is not a run id")))
}

/// A CSV body as a download named `filename`: the one shape of the API's CSV exports.
pub fn csv_attachment(filename: &str, body: String) -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
}
