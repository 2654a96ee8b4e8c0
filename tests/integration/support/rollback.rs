//! The rollback world: the demo's real Alembic project upgraded over a pg_dump backup, writers
//! running, and the guided rollback configured to undo it; and how the tests drive a run.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use sqlx::PgPool;

use super::control::{call, proxy_auth, As, ControlWorld, PROXY_SECRET_ENV};
use super::{dashboard_state_vars, repo, url_of, PrometheusHarness, SimulatorHarness};

pub const BASE_REV: &str = "a1f3c2d4e5b6";
pub const SPLIT_REV: &str = "b7e9d1c0f2a3";

/// The demo's real Alembic project against the test database.
pub fn alembic(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(repo().join("demo/.venv/bin/alembic"))
        .args(["-c", "services/api/alembic/alembic.ini"])
        .args(args)
        .current_dir(repo().join("demo"))
        .env("DATABASE_URL", url)
        .output()
        .expect("demo/.venv/bin/alembic (scripts/setup creates it)");
    assert!(out.status.success(), "alembic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real backup of the database at `url`: `pg_dump -Fc` into `to`.
pub fn pg_dump(url: &str, to: &std::path::Path) {
    let out = std::process::Command::new("pg_dump").args(["-Fc", "-f"]).arg(to).arg(url).output().unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
}

pub struct RollbackWorld {
    pub w: ControlWorld,
    pub backup: std::path::PathBuf,
    /// The dashboard's settings file text and Prometheus's URL, to start a dashboard process.
    pub settings: String,
    pub prom_url: String,
    pub _dir: tempfile::TempDir,
}

/// The diary at the base revision with 40 legacy rows, dumped with pg_dump (the backup); then
/// upgraded to the split revision with 25 split rows; writers running at 3 replicas, flag 25.
pub async fn rollback_world(pool: PgPool, rollback_toml: &str) -> RollbackWorld {
    let url = url_of(&pool);
    alembic(&url, &["upgrade", BASE_REV]);
    sqlx::query("INSERT INTO history_records (user_id, dose) SELECT g, 4 FROM generate_series(1, 40) g")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("diary.dump");
    pg_dump(&url, &backup);
    alembic(&url, &["upgrade", SPLIT_REV]);
    sqlx::query("INSERT INTO history_records (user_id, insulin_short, insulin_long) SELECT g, 4, 12 FROM generate_series(1, 25) g")
        .execute(&pool)
        .await
        .unwrap();
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, Some(pool.clone())).await;
    sim.spawn_writer(pool.clone(), 20.0);
    let settings = format!(
        "environment = \"staging-eu\"\nrefresh_interval_secs = 1\n{auth}[rollback]\nworking_dir = \"{demo}\"\nbackup_file = \"{backup}\"\n\
         diary_api_url = \"{sim}\"\npoll_interval_ms = 50\n\
         smoke_legacy_query = \"vector(10)\"\nsmoke_baseline_query = \"vector(5)\"\n{downgrade}{rollback_toml}\n",
        auth = proxy_auth(&["analytics"]),
        demo = repo().join("demo").display(),
        backup = backup.display(),
        sim = sim.url,
        downgrade = if rollback_toml.contains("downgrade") {
            String::new()
        } else {
            format!(
                "downgrade = {{ kind = \"command\", argv = [\"{}\", \"-c\", \"services/api/alembic/alembic.ini\", \"downgrade\", \"{{previous_revision}}\"] }}\n",
                repo().join("demo/.venv/bin/alembic").display()
            )
        },
    );
    let state = dashboard_state_vars(
        &pool,
        Some(url.clone()),
        Some(&prom.url),
        Some(&sim.kubeconfig),
        Some(&settings),
        &[PROXY_SECRET_ENV],
    )
    .await;
    let prom_url = prom.url.clone();
    let w = ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom };
    RollbackWorld { w, backup, settings, prom_url, _dir: dir }
}

/// An operator records in the deploy journal that the split revision came after `previous`.
pub async fn record_previous(w: &ControlWorld, previous: &str) {
    let body = format!(
        r#"{{"revision": "{SPLIT_REV}", "previous_revision": "{previous}", "note": "from the release notes"}}"#
    );
    let (status, entry) = call(w, As::Operator, "POST", "/api/v1/deploys", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
}

/// A rollback start's body, acknowledging `ack` rows lost (and restoring the backup, if `restore`).
pub fn start_body(ack: i64, restore: bool) -> String {
    serde_json::json!({
        "reason": "doubled doses reported by BI",
        "confirm_environment": "staging-eu",
        "acknowledge_data_loss_rows": ack,
        "restore_data": restore,
        "restore_confirmation": if restore { Some("RESTORE") } else { None },
    })
    .to_string()
}

/// Polls the run until it leaves `running`.
pub async fn settle(w: &ControlWorld, id: i64) -> serde_json::Value {
    for _ in 0..1200 {
        let (_, run) = call(w, As::Viewer, "GET", &format!("/api/v1/rollback/{id}"), None).await;
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not settle in 120 s");
}

/// The run's step called `name`.
pub fn step<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

/// The diary's row count.
pub async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM history_records").fetch_one(pool).await.unwrap()
}

/// The environment of a dashboard process for the rollback world (its settings written into
/// `dir`).
pub fn dashboard_env(rw: &RollbackWorld, dir: &std::path::Path) -> Vec<(String, String)> {
    let settings_file = dir.join("settings.toml");
    std::fs::write(&settings_file, &rw.settings).unwrap();
    [
        ("STATE_DATABASE_URL", url_of(&rw.w.pool)),
        ("DATABASE_URL", url_of(&rw.w.pool)),
        ("PROMETHEUS_URL", rw.prom_url.clone()),
        ("KUBECONFIG", rw.w.sim.kubeconfig.display().to_string()),
        ("ROLLOUT_CONFIG", settings_file.display().to_string()),
        (super::control::PROXY_SECRET_VAR, super::control::SECRET.to_string()),
        ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", super::free_port())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
