//! Who is looking, and what they may do.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Analytics and BI: sees everything, changes nothing.
    Viewer,
    /// On-call: may change the rollout and run the rollback.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub role: Role,
    /// `local` (login form) or `proxy` (authenticating proxy headers).
    pub via: String,
}

/// Who the request comes from (None: nobody signed in).
#[server(endpoint = "me", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_me() -> Result<Option<Identity>, ServerFnError> {
    Ok(caller().await?.1)
}

/// The server state. Absent while leptos renders the app once to list its routes (no request):
/// the resources started then must fail quietly, not panic the server.
#[cfg(feature = "ssr")]
pub(crate) fn server_state() -> Result<crate::server::state::AppState, ServerFnError> {
    use_context::<crate::server::state::AppState>()
        .ok_or_else(|| ServerFnError::new("no request context (the route list is being generated)"))
}

/// The server state and who is calling, for the server functions of every page.
#[cfg(feature = "ssr")]
pub(crate) async fn caller() -> Result<(crate::server::state::AppState, Option<Identity>), ServerFnError> {
    let state = server_state()?;
    let parts: axum::http::request::Parts = leptos_axum::extract().await?;
    let me = state.auth.identify(&state.state_db, &parts.headers, crate::server::http::peer(&parts.extensions)).await;
    Ok((state, me))
}

/// The request id a server function's audit entries carry (REST requests get a random one).
#[cfg(feature = "ssr")]
pub(crate) fn page_request_id() -> String {
    format!("page-{}", chrono::Utc::now().timestamp_micros())
}

/// A service error as a server function error, with the same HTTP status the REST API gives it
/// (401, 403, 409, ...), so both doors answer alike.
#[cfg(feature = "ssr")]
pub(crate) fn refused(e: crate::server::error::ApiError) -> ServerFnError {
    if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
        opts.set_status(e.status_code());
    }
    ServerFnError::new(e.to_string())
}
