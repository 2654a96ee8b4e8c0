//! Notifications: each receiver's state and the recent deliveries; Alertmanager's hook.

use crate::api::audit::Action;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::notify::{NotificationsView, Resend};
use crate::server::caller::Caller;
use crate::server::error::ApiError;
use crate::server::hook::{self, HookAnswer, Payload};
use crate::server::http::extract::Body;
use crate::server::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::DefaultBodyLimit;

const HOOK_BODY_LIMIT: usize = 1 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notifications", get(view))
        .route("/api/v1/notifications/{receiver}/resend", post(resend))
        // Alertmanager groups alerts: its bodies may be larger than a control request's.
        .route("/api/v1/hooks/alertmanager", post(alertmanager).layer(DefaultBodyLimit::max(HOOK_BODY_LIMIT)))
}

async fn view(State(state): State<AppState>) -> Result<Json<NotificationsView>, ApiError> {
    Ok(Json(crate::server::notify::view(&state).await?))
}

/// A dead letter due again (operators; audited as `notify.resend`).
async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(receiver): axum::extract::Path<String>,
    body: Result<Body<Resend>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = match body {
        Ok(Body(b)) => b,
        Err(e) => {
            let e = caller.operator("sending a dead letter again", "send notifications again").err().unwrap_or(e);
            return caller
                .refusal_recorded(&state.state_db, &state.services.metrics, Action::NotifyResend, &receiver, Err(e))
                .await;
        }
    };
    crate::server::notify::resend(&state, &caller, &receiver, b.audit_id).await?;
    Ok(Json(serde_json::json!({"receiver": receiver, "audit_id": b.audit_id, "due": true})))
}

/// The token first (a bad one is refused whatever the body), then the body.
async fn alertmanager(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Payload>, JsonRejection>,
) -> Result<Json<HookAnswer>, ApiError> {
    let rid = caller.request_id();
    let token = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(e) = hook::authorize(&state, token) {
        return hook::refuse(&state, rid, e).await.map(Json);
    }
    match body {
        Ok(Json(p)) => match hook::receive(&state, rid, p).await {
            Err(e @ ApiError::BadRequest(_)) => hook::refuse(&state, rid, e).await,
            other => other,
        },
        Err(e) => {
            let e = ApiError::BadRequest(format!("not Alertmanager's webhook payload: {}", e.body_text()));
            hook::refuse(&state, rid, e).await
        }
    }
    .map(Json)
}
