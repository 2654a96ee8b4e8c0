//! Server-only code: configuration, shared state, the REST API and one module per outside system.

pub mod access;
pub mod adoption;
pub mod alerts;
pub mod audit;
pub mod audit_journal;
pub mod auth;
pub mod cache;
pub mod charts;
pub mod cluster;
pub mod config;
pub mod csp;
pub mod error;
pub mod flag_history;
pub mod flags;
pub mod http;
pub mod overview;
pub mod own_metrics;
pub mod prometheus;
pub mod records;
pub mod reports;
pub mod rollback;
pub mod rollout;
pub mod service;
pub mod state;
pub mod status;
pub mod telemetry;

use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::app::{shell, App};
use config::Config;
use state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the state database is unusable: {0}")]
    StateDatabase(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("authentication setup: {0}")]
    Auth(String),
}

/// The whole HTTP application: pages, server functions, REST API, health probes, static files.
pub fn app(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let leptos_options = state.leptos_options.clone();
    let fn_state = state.clone();
    // Every render gets the state and this request's CSP nonce (csp.rs decides the header).
    let render_context = {
        let state = state.clone();
        move || {
            provide_context(state.clone());
            csp::provide_request_nonce();
        }
    };
    // Read-only server functions use GET; anything that changes state is a POST, which the
    // cross-origin guard below inspects.
    let server_fn = move |req: axum::extract::Request| {
        let state = fn_state.clone();
        async move { leptos_axum::handle_server_fns_with_context(move || provide_context(state.clone()), req).await }
    };
    Router::new()
        .merge(http::router())
        .route("/api/{fn_name}", axum::routing::get(server_fn.clone()).post(server_fn))
        .leptos_routes_with_context(&state, routes, render_context.clone(), move || shell(leptos_options.clone()))
        // Only what the access table lists is served (static files and the not-found page are
        // not routes and pass on).
        .route_layer(axum::middleware::from_fn(access::enforce))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(render_context, shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::refuse_cross_origin))
        .layer(axum::middleware::from_fn(csp::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::cache_headers))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Connects, migrates the state database, starts the background pollers and serves until Ctrl-C.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let conf = get_configuration(Some("Cargo.toml"))
        .or_else(|_| get_configuration(None))
        .map_err(|e| StartError::Leptos(e.to_string()))?;
    let leptos_options = conf.leptos_options;
    let addr = leptos_options.site_addr;
    let state = AppState::connect(config, leptos_options).await?;
    state.spawn_pollers();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!("rollout-dashboard listening on http://{addr}");
    axum::serve(listener, app(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| StartError::Listen { addr, source })
}
