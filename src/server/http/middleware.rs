//! Layers every response passes: the cross-origin guard, reads per client, cache headers and
//! request metrics.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Routes authenticated by a bearer token alone, never by the session cookie: a browser cannot
/// be tricked into sending the token, so they need no origin (Alertmanager sends none).
const TOKEN_ROUTES: &str = "/api/v1/hooks/";

/// CSRF: a state-changing request from another origin is refused before it reaches a handler.
pub async fn refuse_cross_origin(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path().starts_with(TOKEN_ROUTES) || state.auth.same_origin(req.method(), req.headers()) {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused a cross-origin state-changing request");
    ApiError::Forbidden(
        "cross-origin request refused: state-changing requests must come from the dashboard's own pages".into(),
    )
    .into_response()
}

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

/// Times every request into `rollout_dashboard_http_request_duration_seconds`, labelled by the
/// route pattern it matched (`unmatched` for static files and the not-found page), so that the
/// labels stay bounded whatever paths clients send.
pub async fn request_metrics(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string());
    let route =
        route.unwrap_or_else(|| if req.uri().path().starts_with("/pkg/") { "/pkg/*" } else { "unmatched" }.into());
    let method = req.method().clone();
    let resp = next.run(req).await;
    state.services.metrics.http_request(&route, method.as_str(), resp.status().as_u16(), started.elapsed());
    resp
}

/// Whether a request counts against its client's reads.
fn limited(method: &axum::http::Method, path: &str) -> bool {
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    let exempt = path.starts_with("/pkg/") || matches!(path, "/healthz" | "/readyz" | "/metrics" | "/favicon.ico");
    read && !exempt
}

/// Reads past a client's allowance (`client_reads.rs`) are answered 429 with `Retry-After`.
pub async fn client_reads(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(reads) = state.services.client_reads.as_ref() else { return next.run(req).await };
    if !limited(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let peer = super::extract::peer(req.extensions());
    // In-process requests have no socket, hence no client to count.
    let Some(who) = crate::server::auth::client::address(peer, req.headers(), &state.settings.auth.trusted_proxies)
    else {
        return next.run(req).await;
    };
    match reads.check(who) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::info!(client = %who, path = %req.uri().path(), "too many reads from one client: 429");
            let body = serde_json::json!({
                "error": format!("too many reads from your address; try again in {secs} s"),
                "code": "too_many_requests",
            });
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, secs.to_string())],
                axum::Json(body),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cache_control, limited};

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

    #[test]
    fn changes_probes_and_assets_are_never_limited() {
        assert!(limited(&axum::http::Method::GET, "/api/v1/reports/insulin-units.png"));
        assert!(limited(&axum::http::Method::GET, "/"));
        for (m, p) in [
            (axum::http::Method::POST, "/api/v1/rollout/kill"),
            (axum::http::Method::POST, "/api/v1/hooks/alertmanager"),
            (axum::http::Method::GET, "/readyz"),
            (axum::http::Method::GET, "/metrics"),
            (axum::http::Method::GET, "/pkg/rollout-dashboard.wasm"),
        ] {
            assert!(!limited(&m, p), "{m} {p}");
        }
    }
}
