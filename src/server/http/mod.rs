//! The REST API and health probes: one router per resource, merged here. Thin: every handler
//! takes what it needs through the extractors in `extract` and calls a service function that
//! the server functions call too.

mod audit;
mod autopilot;
pub mod extract;
mod gzip_template;
mod health;
pub mod middleware;
mod monitoring;
mod notify;
pub mod page_cache;
mod reports;
mod rollback;
mod rollout;
mod session;

use axum::Router;

use super::state::AppState;
pub use extract::peer;

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .merge(monitoring::router())
        .merge(session::me_router())
        .merge(rollout::router())
        .merge(audit::router())
        .merge(rollback::router())
        .merge(autopilot::router())
        .merge(reports::router())
        .merge(notify::router())
        .layer(axum::middleware::from_fn(extract::request_id));
    Router::new()
        .merge(health::router())
        .merge(api)
        // Control requests are small; a huge body is refused before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(extract::BODY_LIMIT))
        .merge(session::router())
}
