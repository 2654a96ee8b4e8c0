//! Signing in and out with the login form, and who am I.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::{peer, SignedIn};
use crate::server::auth::{client, LoginError};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// `/api/v1/me`, which lives with the API's other routes.
pub fn me_router() -> Router<AppState> {
    Router::new().route("/api/v1/me", get(me))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/login", post(login)).route("/auth/logout", post(logout))
}

async fn me(SignedIn(who): SignedIn) -> impl IntoResponse {
    Json(who)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Only local paths, so the login form cannot be used to send people elsewhere: no `//`, no
/// backslash, and no whitespace or control character anywhere (browsers drop a tab or a newline,
/// so `/\t/evil.example` would become `//evil.example`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn login(State(state): State<AppState>, req: axum::extract::Request) -> axum::response::Response {
    use axum::extract::FromRequest;
    use axum::http::header::{LOCATION, SET_COOKIE};
    // The client as the ingress saw it (a trusted proxy's X-Forwarded-For), for the turn.
    let client = client::address(peer(req.extensions()), req.headers(), &state.settings.auth.trusted_proxies);
    let form = match axum::Form::<LoginForm>::from_request(req, &state).await {
        Ok(axum::Form(f)) => f,
        Err(e) => return ApiError::BadRequest(format!("bad login form: {}", e.body_text())).into_response(),
    };
    let next = local_path(form.next.as_deref());
    match state.auth.login(&state.state_db, form.username.trim(), &form.password, client).await {
        Ok((token, who)) => {
            tracing::info!(user = %who.user, role = who.role.as_str(), "signed in");
            (StatusCode::SEE_OTHER, [(SET_COOKIE, state.auth.session_cookie(Some(&token))), (LOCATION, next)])
                .into_response()
        }
        Err(e) => {
            let who = form.username.chars().take(64).collect::<String>();
            let from = client.map(|c| c.to_string()).unwrap_or_default();
            tracing::warn!(user = %who, client = %from, "sign-in refused: {e}");
            let (code, wait) = match e {
                LoginError::TooMany(wait) => ("too_many", Some(wait)),
                LoginError::Wrong => ("wrong", None),
                LoginError::Unavailable(_) => ("unavailable", None),
            };
            let location = (LOCATION, format!("/login?error={code}"));
            match wait {
                Some(w) => {
                    let retry = (axum::http::header::RETRY_AFTER, w.as_secs().max(1).to_string());
                    (StatusCode::TOO_MANY_REQUESTS, [location, retry]).into_response()
                }
                None => (StatusCode::SEE_OTHER, [location]).into_response(),
            }
        }
    }
}

async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    use axum::http::header::{LOCATION, SET_COOKIE};
    state.auth.logout(&state.state_db, &headers).await;
    (StatusCode::SEE_OTHER, [(SET_COOKIE, state.auth.session_cookie(None)), (LOCATION, "/".to_string())])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_form_sends_people_only_to_pages_of_this_site() {
        for (next, to) in [
            (Some("/?range=7d"), "/?range=7d"),
            (Some("/rollout"), "/rollout"),
            (Some("//evil.example"), "/"),
            (Some("/\t/evil.example"), "/"),
            (Some("/\n/evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (None, "/"),
        ] {
            assert_eq!(super::local_path(next), to, "{next:?}");
        }
    }
}
