//! The control world: a dashboard over the emulated cluster, the diary and Prometheus, with
//! identities from a reverse proxy's headers; and how the tests call it as one person or another.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::server::state::AppState;
use sqlx::PgPool;
use tower::ServiceExt;

use super::web::ORIGIN;
use super::{dashboard_state_vars, diary_schema, url_of, PrometheusHarness, SimulatorHarness};

/// The secret the tests' reverse proxy shares with the dashboard.
pub const SECRET: &str = "proxy-secret-for-tests";

/// The environment variable that gives the dashboard the proxy's shared secret.
pub const PROXY_SECRET_VAR: &str = "ROLLOUT_PROXY_SECRET";

/// `PROXY_SECRET_VAR` set to `SECRET`, for a dashboard's extra environment.
pub const PROXY_SECRET_ENV: (&str, &str) = (PROXY_SECRET_VAR, SECRET);

/// The dashboard's state over a world's parts: the diary in `pool`, `prom`, the cluster of
/// `sim`, `settings` (with `proxy_auth`), the proxy's secret and `env` in its environment.
pub async fn proxied_state(
    pool: &PgPool,
    prom: &PrometheusHarness,
    sim: &SimulatorHarness,
    settings: &str,
    env: &[(&str, &str)],
) -> AppState {
    let mut vars = vec![PROXY_SECRET_ENV];
    vars.extend_from_slice(env);
    dashboard_state_vars(pool, Some(url_of(pool)), Some(&prom.url), Some(&sim.kubeconfig), Some(settings), &vars).await
}

/// The `[auth]` table of every world: identities from proxy headers, which count only from the
/// proxy at 127.0.0.1 (and with the secret, `PROXY_SECRET_ENV`); operators are in `oncall`,
/// viewers in `viewer_groups` (with none, nobody is a viewer). Put it after the top-level keys.
pub fn proxy_auth(viewer_groups: &[&str]) -> String {
    let mut auth =
        "[auth]\nmode = \"proxy\"\ntrusted_proxies = [\"127.0.0.1\"]\noperator_groups = [\"oncall\"]\n".to_string();
    if !viewer_groups.is_empty() {
        let groups: Vec<String> = viewer_groups.iter().map(|g| format!("\"{g}\"")).collect();
        auth.push_str(&format!("viewer_groups = [{}]\n", groups.join(", ")));
    }
    auth
}

pub struct ControlWorld {
    pub app: axum::Router,
    pub state: AppState,
    pub sim: SimulatorHarness,
    pub pool: PgPool,
    pub _prom: PrometheusHarness,
}

/// Diary with the split schema and no doubled rows, Prometheus without alerts, the emulated
/// cluster with the flag at `flag`; identities from proxy headers.
pub async fn control_world(pool: PgPool, flag: &str) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start(flag, 3, None).await;
    let settings = format!("refresh_interval_secs = 1\n{}", proxy_auth(&["analytics"]));
    let state = proxied_state(&pool, &prom, &sim, &settings, &[]).await;
    ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom }
}

/// Who is asking, as the proxy says: nobody, bo (viewer), ana (operator) or cy (operator).
#[derive(Clone, Copy, Debug)]
pub enum As {
    Anonymous,
    Viewer,
    Operator,
    /// A second operator (cy), for approvals.
    OtherOperator,
}

pub async fn call(
    w: &ControlWorld,
    who: As,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let mut req =
        Request::builder().method(method).uri(path).header("origin", ORIGIN).header("content-type", "application/json");
    match who {
        As::Anonymous => {}
        As::Viewer => {
            req = req
                .header("x-forwarded-user", "bo")
                .header("x-forwarded-groups", "analytics")
                .header("x-proxy-secret", SECRET)
        }
        As::Operator => {
            req = req
                .header("x-forwarded-user", "ana")
                .header("x-forwarded-groups", "oncall")
                .header("x-proxy-secret", SECRET)
        }
        As::OtherOperator => {
            req = req
                .header("x-forwarded-user", "cy")
                .header("x-forwarded-groups", "oncall")
                .header("x-proxy-secret", SECRET)
        }
    }
    let resp = w.app.clone().oneshot(req.body(Body::from(body.unwrap_or_default())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// The flag's value in the emulated cluster's ConfigMap.
pub fn flag_value(w: &ControlWorld) -> String {
    w.sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone()
}

/// The audit trail: (actor, action, outcome, value_after), oldest first.
pub async fn audit_rows(w: &ControlWorld) -> Vec<(String, String, String, Option<String>)> {
    sqlx::query_as("SELECT actor, action, outcome, value_after FROM audit_log ORDER BY id")
        .fetch_all(&w.pool)
        .await
        .unwrap()
}
