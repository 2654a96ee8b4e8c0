//! What the pages' server functions share: the server state, who is calling, and service
//! errors with the same HTTP status the REST API gives them, so both doors answer alike.

use leptos::prelude::*;

use super::caller::Caller;
use super::error::ApiError;
use super::state::AppState;

/// The server state. Absent while leptos renders the app once to list its routes (no request):
/// the resources started then must fail quietly, not panic the server.
pub fn server_state() -> Result<AppState, ServerFnError> {
    use_context::<AppState>()
        .ok_or_else(|| ServerFnError::new("no request context (the route list is being generated)"))
}

/// The server state and who is calling. A server function's audit entries carry a request id
/// of their own kind (`page-…`; REST requests get a random one).
pub async fn caller() -> Result<(AppState, Caller), ServerFnError> {
    let state = server_state()?;
    let parts: axum::http::request::Parts = leptos_axum::extract().await?;
    let who = super::http::extract::identify(&state, &parts).await;
    Ok((state, Caller::new(who, format!("page-{}", chrono::Utc::now().timestamp_micros()))))
}

/// A service error as a server function error, with the REST API's status (401, 403, 409, ...).
pub fn refused(e: ApiError) -> ServerFnError {
    if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
        opts.set_status(e.status_code());
    }
    ServerFnError::new(e.to_string())
}
