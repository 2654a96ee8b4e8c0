//! Promises of the foundation, each against the real thing that runs here: PostgreSQL (a fresh
//! database per test), Prometheus started with backfilled history, and the demo simulator's
//! emulated Kubernetes API reached through kube-rs over HTTP.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::cluster::Fault;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::cluster::Cluster;
use rollout_dashboard::server::config::KubeAccess;
use rollout_dashboard::server::error::SourceError;
use rollout_dashboard::server::prometheus::Prometheus;
use rollout_dashboard::server::records::DiaryRecords;
use rollout_dashboard::server::status::collect;
use sqlx::PgPool;
use support::*;
use tower::ServiceExt;

// ---------------------------------------------------------------- diary database

fn day() -> Window {
    "24h".parse().unwrap()
}

#[sqlx::test(migrations = false)]
async fn records_in_the_last_24_hours_follow_the_definitions(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    assert!(schema.insulin_short && schema.insulin_long);
    assert_eq!(schema.alembic_revision.as_deref(), Some("b7e9d1c0f2a3"));
    let c = diary.summary(day(), &schema).await.unwrap().counts;
    // Independently: the fixture's rows with created_at in [now-24h, now).
    let (total, short, long): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(insulin_short), count(insulin_long) FROM history_records
          WHERE created_at >= now() - interval '24 hours' AND created_at < now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((c.total, c.with_short, c.with_long), (total, Some(short), Some(long)));
    assert_eq!((c.total, c.with_short, c.with_long), (11, Some(6), Some(4)));
    // 4 short-only + 2 long-only + 1 both + 2 legacy + 1 doubled + 1 empty.
    assert_eq!((c.with_both, c.legacy_only, c.doubled, c.empty), (Some(2), 2, Some(1), 1));
}

#[sqlx::test(migrations = false)]
async fn after_a_downgrade_the_split_columns_are_reported_missing(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    sqlx::raw_sql(
        "ALTER TABLE history_records DROP COLUMN insulin_long, DROP COLUMN insulin_short;
         UPDATE alembic_version SET version_num = 'a1f3c2d4e5b6'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    assert!(!schema.insulin_short && !schema.insulin_long);
    assert_eq!(schema.alembic_revision.as_deref(), Some("a1f3c2d4e5b6"));
    let c = diary.summary(day(), &schema).await.unwrap().counts;
    assert_eq!((c.total, c.with_short, c.with_long, c.doubled), (11, None, None, None));
    // Without split columns, every row with a dose is legacy: 2 legacy + the doubled row's dose.
    assert_eq!((c.legacy_only, c.empty), (3, 8));
}

#[sqlx::test(migrations = false)]
async fn window_boundaries_include_the_start_and_exclude_the_end(pool: PgPool) {
    diary_schema(&pool).await;
    // Hour-aligned and unaligned windows, so both the cached hours and the edges are exercised.
    for (start, end) in [
        ("2026-11-20 10:00:00+00", "2026-11-21 10:00:00+00"),
        ("2026-11-20 10:17:42.5+00", "2026-11-21 09:03:00.25+00"),
    ] {
        sqlx::query("TRUNCATE history_records").execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES
               (1, $1::timestamptz, NULL, 4.0, NULL),                          -- exactly at start: in
               (2, $1::timestamptz - interval '1 microsecond', NULL, 4.0, NULL), -- just before: out
               (3, $2::timestamptz, 5.0, NULL, NULL),                          -- exactly at end: out
               (4, $2::timestamptz - interval '1 microsecond', 5.0, NULL, NULL), -- just before end: in
               (5, $1::timestamptz + interval '3 hours', 6.0, 6.0, 6.0),       -- doubled
               (6, $1::timestamptz + interval '4 hours', 6.0, 2.0, 6.0),       -- dose = long only: not doubled
               (7, $1::timestamptz + interval '5 hours', NULL, 3.0, 3.0),      -- short = long, no dose: both, not doubled
               (8, $1::timestamptz + interval '6 hours', NULL, NULL, NULL)     -- empty",
        )
        .bind(start)
        .bind(end)
        .execute(&pool)
        .await
        .unwrap();
        let diary = DiaryRecords::new(pool.clone(), "history_records");
        let schema = diary.schema().await.unwrap();
        let parse =
            |s: &str| chrono::DateTime::parse_from_str(&format!("{s}:00"), "%Y-%m-%d %H:%M:%S%.f%:z").unwrap().to_utc();
        let c = diary.summary_between(parse(start), parse(end), &schema).await.unwrap().counts;
        assert_eq!(c.total, 6, "{start}..{end}");
        assert_eq!(c.with_short, Some(4));
        assert_eq!(c.with_long, Some(3));
        assert_eq!(c.with_both, Some(3));
        assert_eq!(c.legacy_only, 1);
        assert_eq!(c.doubled, Some(1));
        assert_eq!(c.empty, 1);
    }
}

#[sqlx::test(migrations = false)]
async fn hourly_series_from_the_cache_equal_a_naive_group_by(pool: PgPool) {
    diary_schema(&pool).await;
    let opts = diary_writer::seed::SeedOptions { days: 7.0, rows: 20_000, doubled_every: 499, users: 500 };
    diary_writer::seed::seed(&pool, &opts).await.unwrap();
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    let range: Window = "7d".parse().unwrap();
    let step: Window = "1h".parse().unwrap();
    for _ in 0..2 {
        // Second round: completed hours come from the cache.
        let series = diary.series(range, step, &schema).await.unwrap();
        let naive: Vec<(chrono::DateTime<chrono::Utc>, i64, i64, i64)> = sqlx::query_as(
            "SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*),
                    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose),
                    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL)
               FROM history_records WHERE created_at >= $1 AND created_at < now() GROUP BY 1",
        )
        .bind(series.range_start)
        .fetch_all(&pool)
        .await
        .unwrap();
        let naive: std::collections::HashMap<_, _> = naive.into_iter().map(|(h, t, d, l)| (h, (t, d, l))).collect();
        assert_eq!(series.buckets.len(), 7 * 24 + 1);
        for b in &series.buckets {
            let want = naive.get(&b.start).copied().unwrap_or((0, 0, 0));
            assert_eq!((b.counts.total, b.counts.doubled.unwrap(), b.counts.legacy_only), want, "bucket {}", b.start);
        }
        let total: i64 = series.buckets.iter().map(|b| b.counts.total).sum();
        assert!(total > 19_000, "{total}");
    }
}

#[sqlx::test(migrations = false)]
async fn a_database_without_alembic_has_no_revision(pool: PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE history_records (id bigserial, user_id bigint, created_at timestamptz, dose numeric, note text)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let schema = DiaryRecords::new(pool, "history_records").schema().await.unwrap();
    assert_eq!(schema.alembic_revision, None);
    assert!(!schema.has_split_columns());
}

// ---------------------------------------------------------------- Prometheus

#[tokio::test]
async fn usage_rates_come_from_the_backfilled_prometheus_history() {
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let client = Prometheus::new(&prom.url, Duration::from_secs(5)).unwrap();
    let split = client.scalar("sum(rate(split_dose_saved_total[5m]))").await.unwrap();
    let legacy = client.scalar("sum(rate(legacy_dose_used_total[5m]))").await.unwrap();
    assert!((split - 1.9).abs() < 1e-9, "split {split}");
    assert!((legacy - 0.07).abs() < 1e-9, "legacy {legacy}");
    // Labels are those of the live exporter, so the live series continues the backfill.
    let samples = client.instant("split_dose_saved_total").await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].labels.get("client_version").map(String::as_str), Some("2.4.0"));
    assert_eq!(samples[0].labels.get("service").map(String::as_str), Some("diary-api"));

    // A query Prometheus rejects comes back with Prometheus's own reason.
    match client.scalar("sum(rate(split_dose_saved_total[5m]").await {
        Err(SourceError::Rejected { detail, .. }) => {
            assert!(detail.contains("bad_data"), "{detail}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // A metric nobody scrapes is "no samples", not zero.
    match client.scalar("sum(rate(nobody_scrapes_this_total[5m]))").await {
        Err(e @ SourceError::Missing { .. }) => assert!(e.to_string().contains("no samples")),
        other => panic!("expected missing data, got {other:?}"),
    }
}

#[tokio::test]
async fn prometheus_that_does_not_answer_is_unreachable() {
    let port = free_port();
    let client = Prometheus::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    let e = client.scalar("up").await.unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().starts_with("Prometheus is unreachable"), "{e}");
}

// ---------------------------------------------------------------- Kubernetes (emulated)

#[tokio::test]
async fn kube_rs_reads_the_flag_and_the_writer_through_a_kubeconfig() {
    let sim = SimulatorHarness::start("25%", 3, None).await;
    let access = KubeAccess::Kubeconfig(sim.kubeconfig.clone());
    let cluster = Cluster::connect(&access, "diabetes", Duration::from_secs(3)).await.unwrap();
    let cm = cluster.configmap("feature-flags").await.unwrap();
    assert_eq!(cm.data.unwrap()["insulin_dose_split"], "25%");
    assert_eq!(cm.metadata.resource_version.as_deref(), Some("100"));
    let r = cluster.deployment_replicas("diary-writer").await.unwrap();
    assert_eq!((r.desired, r.ready), (3, 3));

    let e = cluster.configmap("no-such-map").await.unwrap_err();
    assert!(matches!(e, SourceError::Missing { .. }), "{e:?}");
    assert_eq!(e.to_string(), "configmap diabetes/no-such-map does not exist");

    sim.set_fault(Fault::Error);
    let e = cluster.deployment_replicas("diary-writer").await.unwrap_err();
    assert!(matches!(e, SourceError::Rejected { .. }), "{e:?}");
    assert!(e.to_string().contains("500"), "{e}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_the_emulated_api_server() {
    let sim = SimulatorHarness::start("5", 3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kubeconfig");
    write_kubeconfig(&bad, &sim.url, "not-the-token");
    let cluster = Cluster::connect(&KubeAccess::Kubeconfig(bad), "diabetes", Duration::from_secs(3)).await.unwrap();
    let e = cluster.configmap("feature-flags").await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("not-the-token"), "the token must not appear in errors");
}

#[tokio::test]
async fn a_hanging_api_server_times_out() {
    let sim = SimulatorHarness::start("5", 3, None).await;
    sim.set_fault(Fault::Hang);
    let cluster = Cluster::connect(&KubeAccess::Kubeconfig(sim.kubeconfig.clone()), "diabetes", Duration::from_secs(1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = cluster.configmap("feature-flags").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn without_a_cluster_kubernetes_is_not_configured() {
    let e = Cluster::connect(&KubeAccess::None, "diabetes", Duration::from_secs(1)).await.err().unwrap();
    assert_eq!(e.to_string(), "Kubernetes is not configured: set KUBECONFIG or run in a cluster");
}

// ---------------------------------------------------------------- the status service and its REST door

#[sqlx::test(migrations = false)]
async fn status_reports_all_five_sources_without_error(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("5", 3, None).await;
    let state = dashboard_state(&pool, Some(&pool), Some(&prom.url), Some(&sim.kubeconfig)).await;

    let s = collect(&state).await;
    assert_eq!(s.flag.error, None);
    assert_eq!(
        (s.flag.key.as_str(), s.flag.percentage, s.flag.raw.as_deref(), s.flag.source.as_str()),
        ("insulin_dose_split", Some(5), Some("5"), "kubernetes")
    );
    assert_eq!(s.schema.error, None);
    assert_eq!((s.schema.insulin_short, s.schema.insulin_long), (Some(true), Some(true)));
    assert_eq!(s.schema.alembic_revision.as_deref(), Some("b7e9d1c0f2a3"));
    assert_eq!(s.writer.error, None);
    assert_eq!((s.writer.replicas, s.writer.ready_replicas), (Some(3), Some(3)));
    assert_eq!(s.metrics.error, None);
    assert!((s.metrics.split_per_s.unwrap() - 1.9).abs() < 1e-9);
    assert!((s.metrics.legacy_per_s.unwrap() - 0.07).abs() < 1e-9);
    assert_eq!(s.records_24h.error, None);
    assert_eq!((s.records_24h.total, s.records_24h.with_short, s.records_24h.with_long), (Some(11), Some(6), Some(4)));

    // The REST door returns the same service's answer, in the documented shape.
    let app = rollout_dashboard::server::app(state);
    let resp = app.clone().oneshot(Request::get("/api/v1/status").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["flag"]["percentage"], 5);
    assert_eq!(json["flag"]["raw"], "5");
    assert_eq!(json["writer"]["deployment"], "diary-writer");
    assert_eq!(json["records_24h"]["total"], 11);
    for k in ["flag", "schema", "writer", "metrics", "records_24h"] {
        assert!(json[k]["error"].is_null(), "{k}: {}", json[k]["error"]);
    }
    for path in ["/healthz", "/readyz"] {
        let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}

#[sqlx::test(migrations = false)]
async fn each_source_fails_on_its_own(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let sim = SimulatorHarness::start("banana", 3, None).await;
    // Prometheus configured but not running; the flag holds a value in an unknown format.
    let dead_prometheus = format!("http://127.0.0.1:{}", free_port());
    let state = dashboard_state(&pool, Some(&pool), Some(&dead_prometheus), Some(&sim.kubeconfig)).await;
    let app = rollout_dashboard::server::app(state.clone());
    let resp = app.oneshot(Request::get("/api/v1/status").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a failed source does not fail the request");

    let s = collect(&state).await;
    assert!(s.metrics.error.as_deref().unwrap().starts_with("Prometheus is unreachable"));
    assert_eq!((s.metrics.split_per_s, s.metrics.legacy_per_s), (None, None));
    assert_eq!(s.flag.percentage, None);
    assert_eq!(s.flag.raw.as_deref(), Some("banana"), "an unknown value is shown as it is");
    assert!(s.flag.error.as_deref().unwrap().contains("format"));
    assert_eq!(s.records_24h.error, None);
    assert_eq!(s.records_24h.total, Some(11));
    assert_eq!(s.writer.error, None);

    // Kubernetes failing answers 500: flag and writer say so, the rest is untouched.
    sim.set_fault(Fault::Error);
    let s = collect(&state).await;
    assert!(s.flag.error.as_deref().unwrap().contains("500"));
    assert!(s.writer.error.as_deref().unwrap().contains("500"));
    assert_eq!(s.records_24h.total, Some(11));
}

#[sqlx::test(migrations = false)]
async fn without_optional_sources_the_dashboard_still_answers(pool: PgPool) {
    let state = dashboard_state(&pool, None, None, None).await;
    let s = collect(&state).await;
    assert_eq!(s.flag.error.as_deref(), Some("Kubernetes is not configured: set KUBECONFIG or run in a cluster"));
    assert_eq!(s.writer.error.as_deref(), Some("Kubernetes is not configured: set KUBECONFIG or run in a cluster"));
    assert_eq!(s.metrics.error.as_deref(), Some("Prometheus is not configured: set PROMETHEUS_URL"));
    assert_eq!(s.schema.error.as_deref(), Some("the diary database is not configured: set DATABASE_URL"));
    assert_eq!(s.records_24h.error, s.schema.error);
    // The page itself renders, server-side, with each panel's error in it.
    let app = rollout_dashboard::server::app(state);
    let resp = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap().to_vec()).unwrap();
    assert!(html.contains("Prometheus is not configured: set PROMETHEUS_URL"), "{html}");
    assert!(html.contains(r#"data-testid="metrics-error""#));
}

#[sqlx::test(migrations = false)]
async fn the_state_database_is_migrated_at_start(pool: PgPool) {
    let _state = dashboard_state(&pool, None, None, None).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.contains(&"flag_observations".to_string()), "{tables:?}");
    assert!(tables.contains(&"_sqlx_migrations".to_string()), "{tables:?}");
}
