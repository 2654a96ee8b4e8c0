//! The REST API and health probes: one router per resource, merged here. Thin: every handler
//! takes what it needs through the extractors in `extract` and calls a service function that
//! the server functions call too.

mod audit;
mod autopilot;
pub mod client_reads;
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

/// Turns for reads: at most this many pages, server functions and read-only API calls are
/// worked on at once; the rest wait parked (not in the runtime's queue), so that the probes,
/// the metrics and every change (the kill switch first) never queue behind a crowd of readers.
/// Measured by `scripts/proof abuse`.
pub const READ_TURNS: usize = 4;

/// The one limit every read router shares (tower's, not hand-written).
pub fn read_turns() -> tower::limit::GlobalConcurrencyLimitLayer {
    static TURNS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let turns = TURNS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(READ_TURNS)));
    tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(turns.clone())
}

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .merge(monitoring::router().layer(read_turns()))
        .merge(session::me_router())
        .merge(rollout::router())
        .merge(audit::router().layer(read_turns()))
        .merge(rollback::router())
        .merge(autopilot::router())
        .merge(reports::router().layer(read_turns()))
        .merge(notify::router())
        .layer(axum::middleware::from_fn(extract::request_id));
    Router::new()
        .merge(health::router())
        .merge(api)
        // Control requests are small; a huge body is refused before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(extract::BODY_LIMIT))
        .merge(session::router())
}
