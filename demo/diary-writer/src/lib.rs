//! The demo world's stand-in for the diary service and the few pieces of its cluster that
//! rollout-dashboard talks to. Nothing here is product code: it exists so that the dashboard
//! can be run and tested against real HTTP, a real PostgreSQL and a real Prometheus.

pub mod cluster;
pub mod counters;
pub mod diary_api;
pub mod jobs;
pub mod kube_api;
pub mod kube_jobs_api;
pub mod launchdarkly_api;
pub mod openmetrics;
pub mod rbac;
pub mod receivers_api;
pub mod seed;
pub mod writer;

use std::sync::Arc;

use axum::Router;

/// Everything the simulator's HTTP server shares between its handlers and the writer loop.
#[derive(Clone)]
pub struct World {
    pub cluster: Arc<cluster::Cluster>,
    pub counters: Arc<counters::DoseCounters>,
    pub diary: Option<sqlx::PgPool>,
    /// The LaunchDarkly REST API stand-in (an alternative flag store for the dashboard).
    pub launchdarkly: Arc<launchdarkly_api::Stub>,
    /// The ConfigMap key whose percentage decides which users write split parts.
    pub flag_key: String,
    /// The receivers the dashboard notifies (Slack, Grafana, a webhook), standing in.
    pub receivers: Arc<receivers_api::StandIns>,
}

/// One router for the whole simulator: the legacy diary API, the Prometheus exporter and the
/// emulated Kubernetes and LaunchDarkly endpoints and the receiver stand-ins, all on one port.
pub fn router(world: World) -> Router {
    Router::new()
        .merge(diary_api::router())
        .merge(counters::router())
        .merge(kube_api::router(&world))
        .merge(launchdarkly_api::router())
        .merge(receivers_api::router())
        .with_state(world)
}
