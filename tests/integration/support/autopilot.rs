//! The autopilot world: the control world with a one-second autopilot and writers running; and
//! how the tests start a plan and drive its rounds.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::server::autopilot::driver;
use sqlx::PgPool;

use super::control::{call, flag_value, proxied_state, proxy_auth, As, ControlWorld};
use super::{diary_schema, PrometheusHarness, SimulatorHarness};

/// The control world with a one-second autopilot, every check run for real. The simulator's
/// writer replicas write 10 entries a second each into the diary, split or legacy by the flag,
/// per user (the sample ratio counts them, with a 1 s grace and a 5 s window: the emulated
/// writers read a new flag value at once). The synthetic Prometheus history does not follow the
/// flag (constant 1.9 split and 0.07 legacy writes per second): the legacy share is judged on
/// it, with no propagation grace, over at least 30 s of writes.
pub async fn autopilot_world(pool: PgPool, flag: &str) -> ControlWorld {
    autopilot_world_with(pool, flag, "").await
}

/// The same, with more settings after the `[autopilot]` table's own.
pub async fn autopilot_world_with(pool: PgPool, flag: &str, more: &str) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start(flag, 3, None).await;
    sim.spawn_writer(pool.clone(), 10.0);
    let settings = format!(
        "refresh_interval_secs = 1\n{auth}[autopilot]\ninterval_secs = 1\nlegacy_grace_secs = 0\n\
         sample_ratio_grace_secs = 1\nsample_ratio_min_window_secs = 5\n{more}",
        auth = proxy_auth(&["analytics"]),
    );
    let state = proxied_state(&pool, &prom, &sim, &settings, &[]).await;
    ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom }
}

/// An operator starts a two-step plan (10 %, then 50 %, an hour each); returns once the flag
/// reads the first step.
pub async fn started_at_10_percent(w: &ControlWorld) {
    let steps = r#"{"percentage": 10, "bake_secs": 3600}, {"percentage": 50, "bake_secs": 3600}"#;
    let (status, view) = call(w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    rounds_until(w, 20, |w| flag_value(w) == "10").await;
}

/// Runs rounds until `done` holds (at most `secs` seconds).
pub async fn rounds_until(w: &ControlWorld, secs: u64, done: impl Fn(&ControlWorld) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !done(w) {
        assert!(std::time::Instant::now() < deadline, "not reached within {secs} s; flag {}", flag_value(w));
        driver::tick(&w.state).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A plan start's body with `steps` (JSON objects, comma-separated).
pub fn start_body(steps: &str) -> Option<String> {
    Some(format!(r#"{{"reason": "roll out split doses", "steps": [{steps}]}}"#))
}
