//! The whole HTTP application: the pages (from `app`), the server functions, the REST API
//! (`server::http`), the layers every response passes, and the server's start. It sits above
//! both the pages and the services, so that neither imports the other's side.

use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::app::{shell, App};
use crate::server::config::Config;
use crate::server::state::AppState;
use crate::server::{access, csp, http, StartError};

/// The whole HTTP application: pages, server functions, REST API, health probes, static files.
pub fn app(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let pages = std::sync::Arc::new(http::page_cache::PageCache::new(
        state.settings.refresh_interval(),
        state.services.metrics.clone(),
    ));
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
    // The pages and the server functions (all reads) take turns with the read-only API
    // (`http::read_turns`); the probes and every change do not wait behind them.
    let page_routes = Router::new()
        .route("/api/{fn_name}", axum::routing::get(server_fn.clone()).post(server_fn))
        .leptos_routes_with_context(&state, routes, render_context.clone(), move || shell(leptos_options.clone()))
        .layer(http::read_turns());
    Router::new()
        .merge(http::router())
        .merge(page_routes)
        // Only what the access table lists is served (static files and the not-found page are
        // not routes and pass on).
        .route_layer(axum::middleware::from_fn(access::enforce))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(render_context, shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::middleware::refuse_cross_origin))
        // Before anything is computed: a client over its reads is answered 429 here.
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::middleware::client_reads))
        // Inside the CSP layer: a kept page is served with this response's own nonce.
        .layer(axum::middleware::from_fn_with_state(pages, http::page_cache::serve))
        .layer(axum::middleware::from_fn(csp::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::middleware::cache_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::middleware::request_metrics))
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
    crate::server::background::start(&state);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!("rollout-dashboard listening on http://{addr}");
    axum::serve(listener, app(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// Ctrl-C, or SIGTERM (what Kubernetes and container runtimes send; as PID 1 in a container,
/// a process without a handler would ignore it until the SIGKILL that follows the grace period).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server gracefully");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
