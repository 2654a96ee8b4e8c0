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
    let app = rollout_dashboard::site::app(state);
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
    let app = rollout_dashboard::site::app(state.clone());
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
    let app = rollout_dashboard::site::app(state);
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

// ---------------------------------------------------------------- outside systems going away and coming back

#[sqlx::test(migrations = false)]
async fn prometheus_going_away_and_coming_back(pool: PgPool) {
    let mut prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let state = dashboard_state_with(
        &pool,
        None,
        Some(&prom.url),
        None,
        Some("refresh_interval_secs = 1\nsource_timeout_secs = 2\n"),
    )
    .await;
    let ok = rollout_dashboard::server::service::status(&state).await;
    assert_eq!(ok.metrics.error, None);

    prom.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cache interval
    let down = rollout_dashboard::server::service::status(&state).await;
    assert!(down.metrics.error.as_deref().unwrap().starts_with("Prometheus is unreachable"));
    let since = down.failing_since.get("prometheus").copied().expect("failing since is reported");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let still = rollout_dashboard::server::service::status(&state).await;
    assert_eq!(still.failing_since.get("prometheus"), Some(&since), "since stays at the first failure");

    prom.restart();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = rollout_dashboard::server::service::status(&state).await;
    assert_eq!(back.metrics.error, None);
    assert!((back.metrics.split_per_s.unwrap() - 1.9).abs() < 1e-9);
    assert!(!back.failing_since.contains_key("prometheus"));
}

#[sqlx::test(migrations = false)]
async fn the_diary_database_going_away_and_coming_back(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let diary_url = proxy.url_for(&url_of(&pool));
    let state = dashboard_state_with(
        &pool,
        Some(diary_url),
        None,
        None,
        Some("refresh_interval_secs = 1\nsource_timeout_secs = 2\n"),
    )
    .await;
    let day: Window = "24h".parse().unwrap();
    let ok = rollout_dashboard::server::service::records_summary(&state, day).await.unwrap();
    assert_eq!(ok.counts.total, 11);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = rollout_dashboard::server::service::records_summary(&state, day).await.unwrap_err();
    assert!(e.to_string().starts_with("the diary database"), "{e}");
    let status = rollout_dashboard::server::service::status(&state).await;
    assert!(status.records_24h.error.is_some());
    assert!(status.failing_since.contains_key("diary_database"));

    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        match rollout_dashboard::server::service::records_summary(&state, day).await {
            Ok(s) => {
                assert_eq!(s.counts.total, 11);
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("the diary database did not come back: {e}"),
        }
    }
}

// ---------------------------------------------------------------- many viewers, one backend query

#[sqlx::test(migrations = false)]
async fn a_hundred_concurrent_viewers_cost_one_backend_query(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let state = dashboard_state(&pool, Some(&pool), None, None).await;
    let day: Window = "24h".parse().unwrap();
    let before = state.services.metrics.backend_queries("diary_database");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move { rollout_dashboard::server::service::records_summary(&state, day).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().counts.total, 11);
    }
    assert_eq!(state.services.metrics.backend_queries("diary_database") - before, 1);
    let metrics = state.services.metrics.render();
    assert!(metrics.contains("rollout_dashboard_cache_hits_total{cache=\"records_summary\"} 99"), "{metrics}");
}

// ---------------------------------------------------------------- the records and adoption APIs

async fn get_json(app: &axum::Router, path: &str) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[sqlx::test(migrations = false)]
async fn the_records_api_follows_its_documented_shape(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let app = rollout_dashboard::site::app(dashboard_state(&pool, Some(&pool), None, None).await);
    let (status, s) = get_json(&app, "/api/v1/records/summary?window=24h").await;
    assert_eq!(status, StatusCode::OK);
    for (k, v) in [
        ("total", 11),
        ("with_short", 6),
        ("with_long", 4),
        ("with_both", 2),
        ("legacy_only", 2),
        ("doubled", 1),
        ("empty", 1),
    ] {
        assert_eq!(s[k], v, "{k}");
    }
    let start = chrono::DateTime::parse_from_rfc3339(s["window_start"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(s["window_end"].as_str().unwrap()).unwrap();
    assert_eq!((end - start).num_seconds(), 86_400);

    let (status, series) = get_json(&app, "/api/v1/records/series?range=2d&step=1h").await;
    assert_eq!(status, StatusCode::OK);
    let buckets = series["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 49);
    let total: i64 = buckets.iter().map(|b| b["total"].as_i64().unwrap()).sum();
    // The first bucket starts at the hour before now - 2d: 11 rows in the last day, one 25 hours
    // ago, one 2 days ago; not the one 3 days ago, nor the one stamped in the future.
    assert_eq!(total, 13);

    let (status, doubled) = get_json(&app, "/api/v1/records/doubled?limit=20").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doubled.as_array().unwrap().len(), 1);
    assert_eq!(doubled[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["created_at", "id"], "ids and times only");

    for bad in [
        "/api/v1/records/summary?window=0m",
        "/api/v1/records/summary?window=91d",
        "/api/v1/records/summary?window=24",
        "/api/v1/records/summary?window=1w",
        "/api/v1/records/summary?windw=1h",
        "/api/v1/records/series?range=1h&step=2h",
        "/api/v1/records/series?range=90d&step=1m",
        "/api/v1/records/doubled?limit=-1",
        "/api/v1/records/doubled?limit=abc",
        "/api/v1/adoption?range=1y",
        "/api/v1/flag/history?range=",
        // A multi-byte unit used to panic the handler (found by tests/hostile_input.rs).
        "/api/v1/records/summary?window=1%C2%A5",
        "/api/v1/reports/insulin-units.csv?range=%C2%A5",
    ] {
        let (status, body) = get_json(&app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], "bad_request", "{bad}");
        assert!(body["error"].as_str().unwrap().len() > 10, "{bad}");
    }
}

#[sqlx::test(migrations = false)]
async fn adoption_and_alerts_come_from_prometheus(pool: PgPool) {
    let rules = "groups:\n- name: t\n  interval: 1s\n  rules:\n  \
        - alert: RolloutAlert\n    expr: vector(1) > 0\n    labels: {rollout: insulin_dose_split, severity: critical}\n    annotations: {summary: s}\n  \
        - alert: OtherTeam\n    expr: vector(1) > 0\n    labels: {team: other}\n";
    let prom = PrometheusHarness::start_with_rules(&synthetic(1.8, 0.2, 3 * 86400, 3600, 60), Some(rules));
    // The rollout started two days ago (before the dashboard ran), so the 24-hour check applies.
    let started = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let settings = format!("[adoption]\nlegacy_share_target = 0.05\nrollout_started_at = \"{started}\"\n");
    let state = dashboard_state_with(&pool, None, Some(&prom.url), None, Some(&settings)).await;
    let a = rollout_dashboard::server::service::adoption(&state, "24h".parse().unwrap()).await.unwrap();
    assert!(a.split_per_s.len() > 500 && a.split_per_s.len() <= 11_000, "{}", a.split_per_s.len());
    assert!(a.split_per_s.iter().all(|(_, v)| (v - 1.8).abs() < 1e-6));
    let want = 0.2 / 2.0;
    assert!((a.current_share.unwrap() - want).abs() < 1e-9);
    assert!(a.legacy_share.iter().all(|(_, v)| (v - want).abs() < 1e-9));
    // 0.2 / 2.0 = 10 %, not below the 5 % target.
    assert_eq!(a.check.outcome, rollout_dashboard::api::adoption::CheckOutcome::Fail);
    assert!((a.check.share_24h.unwrap() - want).abs() < 1e-9);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = rollout_dashboard::server::alerts::rollout_alerts(&state).await.unwrap();
        if !alerts.is_empty() || std::time::Instant::now() > deadline {
            break alerts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].name, "RolloutAlert");
    assert_eq!(alerts[0].severity.as_deref(), Some("critical"));
}

#[sqlx::test(migrations = false)]
async fn nan_and_infinite_answers_are_reported_not_shown_as_numbers(pool: PgPool) {
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let settings = "[metrics]\nsplit_rate_query = \"sum(rate(split_dose_saved_total[{window}])) * (0/0)\"\n\
                    legacy_rate_query = \"sum(rate(legacy_dose_used_total[{window}])) / 0\"\n";
    let state = dashboard_state_with(&pool, None, Some(&prom.url), None, Some(settings)).await;
    let s = rollout_dashboard::server::status::collect(&state).await;
    let e = s.metrics.error.clone().unwrap();
    assert!(e.contains("NaN") || e.contains("inf"), "{e}");
    assert_eq!((s.metrics.split_per_s, s.metrics.legacy_per_s), (None, None));
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["metrics"]["split_per_s"].is_null() && json["metrics"]["legacy_per_s"].is_null());
    // In charts the non-finite points become gaps, not zeros.
    let a = rollout_dashboard::server::adoption::adoption(&state, "1h".parse().unwrap()).await.unwrap();
    assert!(a.split_per_s.is_empty() && a.legacy_per_s.is_empty() && a.legacy_share.is_empty());
}

// ---------------------------------------------------------------- writing the flag; the audit trail

fn flag_store(cluster: Cluster) -> rollout_dashboard::server::flags::FlagStore {
    rollout_dashboard::server::flags::FlagStore::kubernetes(cluster, "feature-flags", "insulin_dose_split")
}

#[tokio::test]
async fn a_flag_write_keeps_the_format_and_is_read_back() {
    use rollout_dashboard::server::flags::Percentage;
    let sim = SimulatorHarness::start("5%", 3, None).await;
    let cluster = Cluster::connect(&KubeAccess::Kubeconfig(sim.kubeconfig.clone()), "diabetes", Duration::from_secs(3))
        .await
        .unwrap();
    let store = flag_store(cluster.clone());
    let change = store.write("100", Percentage::new(25).unwrap(), "test").await.unwrap();
    assert_eq!((change.before.as_str(), change.after.as_str()), ("5%", "25%"));
    let cm = cluster.configmap("feature-flags").await.unwrap();
    assert_eq!(cm.data.unwrap()["insulin_dose_split"], "25%");
    assert_eq!(cm.metadata.resource_version, change.version);
}

#[tokio::test]
async fn a_write_on_a_stale_version_is_refused_and_overwrites_nothing() {
    use rollout_dashboard::server::flags::{FlagWriteError, Percentage};
    let sim = SimulatorHarness::start("5", 3, None).await;
    let cluster = Cluster::connect(&KubeAccess::Kubeconfig(sim.kubeconfig.clone()), "diabetes", Duration::from_secs(3))
        .await
        .unwrap();
    let store = flag_store(cluster.clone());
    // Someone else moves the flag to 10 after the operator saw version 100.
    let other = store.write("100", Percentage::new(10).unwrap(), "test").await.unwrap();
    let e = store.write("100", Percentage::new(50).unwrap(), "test").await.unwrap_err();
    assert!(matches!(e, FlagWriteError::Conflict(_)), "{e:?}");
    assert!(e.to_string().contains("\"10\""), "the new value is shown: {e}");
    let cm = cluster.configmap("feature-flags").await.unwrap();
    assert_eq!(cm.data.unwrap()["insulin_dose_split"], "10");
    assert_eq!(cm.metadata.resource_version, other.version);
    // A format that cannot say 25 % is refused without writing.
    sim.cluster.write_configmap(None, [("insulin_dose_split".to_string(), "on".to_string())].into()).unwrap();
    let v = cluster.configmap("feature-flags").await.unwrap().metadata.resource_version.unwrap();
    let e = store.write(&v, Percentage::new(25).unwrap(), "test").await.unwrap_err();
    assert!(matches!(e, FlagWriteError::Unwritable(_)), "{e:?}");
    assert_eq!(cluster.configmap("feature-flags").await.unwrap().data.unwrap()["insulin_dose_split"], "on");
}

#[sqlx::test(migrations = false)]
async fn the_audit_table_refuses_update_delete_and_truncate(pool: PgPool) {
    use rollout_dashboard::api::audit::Outcome;
    use rollout_dashboard::server::audit::{list, record, NewEntry};
    let _state = dashboard_state(&pool, None, None, None).await; // runs the migrations
    let entry = NewEntry {
        actor: "ana".into(),
        role: "operator".into(),
        action: "flag.set".into(),
        target: "diabetes/feature-flags/insulin_dose_split".into(),
        value_before: Some("5".into()),
        value_after: Some("25".into()),
        reason: Some("step two".into()),
        outcome: Outcome::Done,
        outcome_detail: None,
        request_id: Some("req-1".into()),
    };
    let id = record(&pool, &entry).await.unwrap();
    for sql in ["UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let e = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let all = list(&pool, 10, None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].reason.as_deref(), all[0].outcome), (id, Some("step two"), Outcome::Done));
    assert_eq!(list(&pool, 10, Some("rollback.start")).await.unwrap().len(), 0);
}

// ---------------------------------------------------------------- who is asking

const ORIGIN: &str = "http://127.0.0.1:3000";

fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    use rollout_dashboard::server::auth::hash_password;
    let path = dir.join("users.toml");
    std::fs::write(
        &path,
        format!(
            "[[users]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"{}\"\n\n\
             [[users]]\nname = \"bo\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            hash_password("operator-pw"),
            hash_password("viewer-pw")
        ),
    )
    .unwrap();
    path
}

async fn post_form(
    app: &axum::Router,
    path: &str,
    body: &str,
    origin: &str,
    cookie: Option<&str>,
) -> axum::response::Response {
    let mut req =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded").header("origin", origin);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap()
}

async fn me(app: &axum::Router, cookie: Option<&str>, headers: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get("/api/v1/me");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[sqlx::test(migrations = false)]
async fn local_sign_in_sets_a_strict_cookie_and_sign_out_ends_it(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("[auth]\nmode = \"local\"\nusers_file = \"{}\"\n", users_file(dir.path()).display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    assert_eq!(me(&app, None, &[]).await.0, StatusCode::UNAUTHORIZED);

    let resp =
        post_form(&app, "/auth/login", "username=ana&password=operator-pw&next=%2F%3Frange%3D7d", ORIGIN, None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/?range=7d");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, who) = me(&app, Some(&cookie), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((who["user"].as_str(), who["role"].as_str()), (Some("ana"), Some("operator")));
    // Only a hash of the token is stored.
    let stored: String = sqlx::query_scalar("SELECT token_sha256 FROM sessions").fetch_one(&pool).await.unwrap();
    assert!(!cookie.contains(&stored));

    let resp = post_form(&app, "/auth/logout", "", ORIGIN, Some(&cookie)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(me(&app, Some(&cookie), &[]).await.0, StatusCode::UNAUTHORIZED);

    // An open redirect through `next` is not possible.
    let resp =
        post_form(&app, "/auth/login", "username=bo&password=viewer-pw&next=%2F%2Fevil.example", ORIGIN, None).await;
    assert_eq!(resp.headers()["location"], "/");
}

#[sqlx::test(migrations = false)]
async fn wrong_passwords_are_refused_and_then_rate_limited(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("[auth]\nusers_file = \"{}\"\nlogin_attempts = 3\n", users_file(dir.path()).display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    // Unknown users are refused exactly like wrong passwords.
    for body in ["username=ana&password=guess", "username=nobody&password=x", "username=ana&password=guess2"] {
        let resp = post_form(&app, "/auth/login", body, ORIGIN, None).await;
        assert_eq!(resp.headers()["location"], "/login?error=wrong", "{body}");
        assert!(resp.headers().get("set-cookie").is_none());
    }
    // Even the right password is refused while the limit holds.
    let resp = post_form(&app, "/auth/login", "username=ana&password=operator-pw", ORIGIN, None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("set-cookie").is_none());
    // The limit is per client address too: another name from the same client is held back.
    let resp = post_form(&app, "/auth/login", "username=bo&password=viewer-pw", ORIGIN, None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrations = false)]
async fn state_changing_requests_from_another_origin_are_refused(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("[auth]\nusers_file = \"{}\"\n", users_file(dir.path()).display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    for origin in ["http://evil.example", "http://127.0.0.1:3001", "null"] {
        let resp = post_form(&app, "/auth/login", "username=ana&password=operator-pw", origin, None).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(resp.headers().get("set-cookie").is_none());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "forbidden");
    }
    let no_origin = app.clone().oneshot(Request::post("/auth/logout").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test(migrations = false)]
async fn proxy_headers_count_only_with_the_shared_secret(pool: PgPool) {
    let settings =
        "[auth]\nmode = \"proxy\"\noperator_groups = [\"oncall\"]\nviewer_groups = [\"analytics\", \"bi\"]\n";
    let state =
        dashboard_state_vars(&pool, None, None, None, Some(settings), &[("ROLLOUT_PROXY_SECRET", "s3cret-proxy")])
            .await;
    let app = rollout_dashboard::site::app(state);
    let oncall =
        [("x-forwarded-user", "ana"), ("x-forwarded-groups", "staff, oncall"), ("x-proxy-secret", "s3cret-proxy")];
    let (status, who) = me(&app, None, &oncall).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (who["user"].as_str(), who["role"].as_str(), who["via"].as_str()),
        (Some("ana"), Some("operator"), Some("proxy"))
    );
    let bi =
        [("x-forwarded-email", "bo@example.org"), ("x-forwarded-groups", "bi"), ("x-proxy-secret", "s3cret-proxy")];
    assert_eq!(me(&app, None, &bi).await.1["role"], "viewer");
    // Forged headers without the secret, or with a wrong one, or outside every group: no identity.
    let forged = [("x-forwarded-user", "mallory"), ("x-forwarded-groups", "oncall")];
    assert_eq!(me(&app, None, &forged).await.0, StatusCode::UNAUTHORIZED);
    let wrong = [("x-forwarded-user", "mallory"), ("x-forwarded-groups", "oncall"), ("x-proxy-secret", "guess")];
    assert_eq!(me(&app, None, &wrong).await.0, StatusCode::UNAUTHORIZED);
    let outsider = [("x-forwarded-user", "eve"), ("x-forwarded-groups", "sales"), ("x-proxy-secret", "s3cret-proxy")];
    assert_eq!(me(&app, None, &outsider).await.0, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- rollout control

const SECRET: &str = "proxy-secret-for-tests";

struct ControlWorld {
    app: axum::Router,
    state: rollout_dashboard::server::state::AppState,
    sim: SimulatorHarness,
    pool: PgPool,
    _prom: PrometheusHarness,
}

/// Diary with the split schema and no doubled rows, Prometheus without alerts, the emulated
/// cluster with the flag at `flag`; identities from proxy headers.
async fn control_world(pool: PgPool, flag: &str) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start(flag, 3, None).await;
    let settings = "refresh_interval_secs = 1\n[auth]\nmode = \"proxy\"\noperator_groups = [\"oncall\"]\nviewer_groups = [\"analytics\"]\n";
    let state = dashboard_state_vars(
        &pool,
        Some(url_of(&pool)),
        Some(&prom.url),
        Some(&sim.kubeconfig),
        Some(settings),
        &[("ROLLOUT_PROXY_SECRET", SECRET)],
    )
    .await;
    ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom }
}

#[derive(Clone, Copy, Debug)]
enum As {
    Anonymous,
    Viewer,
    Operator,
    /// A second operator (cy), for approvals.
    OtherOperator,
}

async fn call(
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

fn flag_value(w: &ControlWorld) -> String {
    w.sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone()
}

async fn audit_rows(w: &ControlWorld) -> Vec<(String, String, String, Option<String>)> {
    sqlx::query_as("SELECT actor, action, outcome, value_after FROM audit_log ORDER BY id")
        .fetch_all(&w.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn who_may_do_what(pool: PgPool) {
    let w = control_world(pool, "5").await;
    // Everyone may look.
    for who in [As::Anonymous, As::Viewer, As::Operator] {
        let (status, state) = call(&w, who, "GET", "/api/v1/rollout", None).await;
        assert_eq!(status, StatusCode::OK, "{who:?}");
        assert_eq!(state["percentage"], 5);
    }
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let set = |p: i64| Some(format!(r#"{{"percentage": {p}, "reason": "step", "expected_version": "{version}"}}"#));
    // The whole matrix: (who, action) → status; nothing changes unless an operator acts.
    let matrix = [
        (As::Anonymous, "/api/v1/rollout", set(10), StatusCode::UNAUTHORIZED),
        (As::Viewer, "/api/v1/rollout", set(10), StatusCode::FORBIDDEN),
        (As::Anonymous, "/api/v1/rollout/kill", Some("{}".to_string()), StatusCode::UNAUTHORIZED),
        (As::Viewer, "/api/v1/rollout/kill", Some("{}".to_string()), StatusCode::FORBIDDEN),
    ];
    for (who, path, body, want) in matrix {
        let (status, err) = call(&w, who, "POST", path, body).await;
        assert_eq!(status, want, "{who:?} {path}");
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(flag_value(&w), "5", "{who:?} {path} changed nothing");
    }
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(10)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["before"].as_str(), done["after"].as_str()), (Some("5"), Some("10")));
    assert_eq!(flag_value(&w), "10");
    let (status, done) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason": "pager"}"#.into())).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(flag_value(&w), "0");
    // Every attempt is in the audit trail: four refusals, then two changes.
    let rows = audit_rows(&w).await;
    let outcomes: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect();
    assert_eq!(
        outcomes,
        [
            ("anonymous", "refused"),
            ("bo", "refused"),
            ("anonymous", "refused"),
            ("bo", "refused"),
            ("ana", "done"),
            ("ana", "done")
        ]
    );
    assert_eq!(rows[4].3.as_deref(), Some("10"));
    assert_eq!((rows[5].1.as_str(), rows[5].3.as_deref()), ("flag.kill", Some("0")));
}

#[sqlx::test(migrations = false)]
async fn bad_inputs_are_refused_and_write_nothing(pool: PgPool) {
    let w = control_world(pool, "5").await;
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let huge = format!(r#"{{"percentage": 10, "reason": "{}", "expected_version": "{version}"}}"#, "x".repeat(20_000));
    let cases = [
        (format!(r#"{{"percentage": -1, "reason": "r", "expected_version": "{version}"}}"#), StatusCode::BAD_REQUEST),
        (format!(r#"{{"percentage": 101, "reason": "r", "expected_version": "{version}"}}"#), StatusCode::BAD_REQUEST),
        (format!(r#"{{"percentage": 12.5, "reason": "r", "expected_version": "{version}"}}"#), StatusCode::BAD_REQUEST),
        (
            format!(r#"{{"percentage": "abc", "reason": "r", "expected_version": "{version}"}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (format!(r#"{{"percentage": 10, "expected_version": "{version}"}}"#), StatusCode::BAD_REQUEST),
        (format!(r#"{{"percentage": 10, "reason": "   ", "expected_version": "{version}"}}"#), StatusCode::BAD_REQUEST),
        (
            format!(r#"{{"percentage": 10, "reason": "r", "expected_version": "{version}", "force": true}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"percentage": 10, "reason": "r"}"#.to_string(), StatusCode::BAD_REQUEST),
        ("not json".to_string(), StatusCode::BAD_REQUEST),
        (huge, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (body, want) in &cases {
        let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body.clone())).await;
        assert_eq!(status, *want, "{}", &body[..body.len().min(80)]);
        assert!(err["code"].is_string() && err["error"].is_string(), "{err}");
    }
    assert_eq!(flag_value(&w), "5");
    let rows = audit_rows(&w).await;
    assert_eq!(rows.len(), cases.len(), "each refusal is recorded");
    assert!(rows.iter().all(|r| r.2 == "refused" && r.3.is_none()));
}

#[sqlx::test(migrations = false)]
async fn a_stale_version_is_a_conflict_and_guards_block_increases(pool: PgPool) {
    let w = control_world(pool, "5").await;
    let (_, state) = call(&w, As::Operator, "GET", "/api/v1/rollout", None).await;
    let seen = state["version"].as_str().unwrap().to_string();
    assert!(state["guards"].as_array().unwrap().iter().all(|g| g["passed"] == true), "{state}");
    // Someone changes the flag with kubectl after the operator looked.
    w.sim.cluster.write_configmap(None, [("insulin_dose_split".to_string(), "7".to_string())].into()).unwrap();
    let body = format!(r#"{{"percentage": 25, "reason": "step", "expected_version": "{seen}"}}"#);
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("version_conflict")));
    assert!(err["error"].as_str().unwrap().contains("\"7\""), "the new value is shown: {err}");
    assert_eq!(flag_value(&w), "7");

    // A doubled record appears: increases are blocked, decreases are not.
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (1, now() - interval '1 minute', 4, 4, 4)")
        .execute(&w.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cache interval
    let (_, state) = call(&w, As::Operator, "GET", "/api/v1/rollout", None).await;
    let version = state["version"].as_str().unwrap().to_string();
    let guard = state["guards"].as_array().unwrap().iter().find(|g| g["name"] == "no_doubled_records").unwrap().clone();
    assert_eq!(guard["passed"], false);
    let up = |extra: &str| {
        Some(format!(r#"{{"percentage": 25, "reason": "step", "expected_version": "{version}"{extra}}}"#))
    };
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", up("")).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("guard_failed")));
    assert!(err["details"].is_array());
    let (status, _) = call(&w, As::Operator, "POST", "/api/v1/rollout", up(r#", "override_guards": true"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "an override needs its reason");
    assert_eq!(flag_value(&w), "7");
    let (status, done) = call(
        &w,
        As::Operator,
        "POST",
        "/api/v1/rollout",
        up(r#", "override_guards": true, "override_reason": "the doubled row is a known test record""#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(flag_value(&w), "25");
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT outcome_detail FROM audit_log WHERE outcome = 'done' ORDER BY id DESC LIMIT 1")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(
        recorded.as_deref(),
        Some("guards overridden (no_doubled_records): the doubled row is a known test record")
    );
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let down = format!(r#"{{"percentage": 5, "reason": "back off", "expected_version": "{version}"}}"#);
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout", Some(down)).await.0, StatusCode::OK);
    assert_eq!(flag_value(&w), "5");
}

// ---------------------------------------------------------------- LaunchDarkly as the flag store

/// As `control_world`, with the flag in the simulator's LaunchDarkly stand-in (REST API v2).
async fn launchdarkly_world(pool: PgPool, percentage: u32, token: Option<&str>) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("5", 3, None).await;
    sim.launchdarkly.put_boolean_rollout("diary", "insulin_dose_split", "production", percentage);
    let settings = format!(
        "refresh_interval_secs = 1\n[flag]\nbackend = \"launchdarkly\"\n[flag.launchdarkly]\nbase_url = \"{}\"\n\
         project = \"diary\"\nenvironment = \"production\"\n[auth]\nmode = \"proxy\"\noperator_groups = [\"oncall\"]\n",
        sim.url
    );
    let token = token.map(str::to_string).unwrap_or_else(|| sim.launchdarkly_token.clone());
    let state = dashboard_state_vars(
        &pool,
        Some(url_of(&pool)),
        Some(&prom.url),
        Some(&sim.kubeconfig),
        Some(&settings),
        &[("ROLLOUT_PROXY_SECRET", SECRET), ("LAUNCHDARKLY_API_TOKEN", &token)],
    )
    .await;
    ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom }
}

fn ld_weights(w: &ControlWorld) -> (i64, i64, i64) {
    let flag = w.sim.launchdarkly.get("diary", "insulin_dose_split").unwrap();
    let v = &flag["environments"]["production"]["fallthrough"]["rollout"]["variations"];
    (flag["_version"].as_i64().unwrap(), v[0]["weight"].as_i64().unwrap(), v[1]["weight"].as_i64().unwrap())
}

/// Every sentence and label about the flag comes from its backend: under LaunchDarkly nothing
/// names a ConfigMap or a resourceVersion (the confirmation dialog's target, the status, the
/// overview's data); under Kubernetes they do. The chart markers: charts::rollout's unit test.
#[sqlx::test(migrations = false)]
async fn the_flags_wording_is_the_backends_own(pool: PgPool) {
    let w = launchdarkly_world(pool, 5, None).await;
    let (status, rollout) = call(&w, As::Viewer, "GET", "/api/rollout", None).await;
    assert_eq!(status, StatusCode::OK, "{rollout}");
    assert_eq!(
        rollout["target"],
        "LaunchDarkly flag insulin_dose_split in project diary, environment production (default rule)"
    );
    let (_, st) = call(&w, As::Viewer, "GET", "/api/v1/status", None).await;
    assert_eq!(
        (st["flag"]["source"].as_str(), st["flag"]["version_field"].as_str()),
        (Some("launchdarkly"), Some("version"))
    );
    let (status, overview) = call(&w, As::Viewer, "GET", "/api/overview?range=24h&window=24h", None).await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    let text = format!("{rollout}{st}{overview}");
    for leak in ["ConfigMap", "configmap", "resourceVersion"] {
        assert!(!text.contains(leak), "{leak:?} appears under LaunchDarkly");
    }
}

#[sqlx::test(migrations = false)]
async fn under_kubernetes_the_flag_is_a_configmap_key_with_a_resource_version(pool: PgPool) {
    let k = control_world(pool, "5").await;
    let (_, rollout) = call(&k, As::Viewer, "GET", "/api/rollout", None).await;
    assert_eq!(rollout["target"], "ConfigMap diabetes/feature-flags, key insulin_dose_split");
    let (_, st) = call(&k, As::Viewer, "GET", "/api/v1/status", None).await;
    assert_eq!(st["flag"]["version_field"], "resourceVersion");
}

#[sqlx::test(migrations = false)]
async fn launchdarkly_rollout_is_read_and_changed_through_its_rest_api(pool: PgPool) {
    let w = launchdarkly_world(pool, 5, None).await;
    let (status, state) = call(&w, As::Viewer, "GET", "/api/v1/rollout", None).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!((state["percentage"].as_i64(), state["source"].as_str()), (Some(5), Some("launchdarkly")));
    assert_eq!(state["raw"], "targeting on, default rule rollout true 5% / false 95%");
    assert_eq!((state["version"].as_str(), state["writable"].as_bool()), (Some("1"), Some(true)));

    let set =
        |p: u32, v: &str| Some(format!(r#"{{"percentage": {p}, "reason": "step two", "expected_version": "{v}"}}"#));
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(25, "1")).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["after"], "targeting on, default rule rollout true 25% / false 75%");
    assert_eq!(done["version"], "2");
    assert_eq!(ld_weights(&w), (2, 25_000, 75_000));
    let flag = w.sim.launchdarkly.get("diary", "insulin_dose_split").unwrap();
    let rollout = &flag["environments"]["production"]["fallthrough"]["rollout"];
    assert_eq!((rollout["bucketBy"].as_str(), rollout["contextKind"].as_str()), (Some("key"), Some("user")), "kept");
    assert_eq!(w.sim.launchdarkly.comments(), ["rollout-dashboard, by ana: step two"]);

    // A stale version: refused by the dashboard before any PATCH, nothing written.
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(50, "1")).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("version_conflict")), "{err}");
    assert!(err["error"].as_str().unwrap().contains("true 25%"), "the new value is shown: {err}");
    assert_eq!(ld_weights(&w), (2, 25_000, 75_000));

    // The write is conditional in LaunchDarkly itself too: a patch testing an old `_version`
    // (someone changed the flag between the dashboard's read and its write) changes nothing.
    let settings = rollout_dashboard::server::config::Settings::from_toml(&format!(
        "[flag]\nbackend = \"launchdarkly\"\n[flag.launchdarkly]\nbase_url = \"{}\"\nproject = \"diary\"\n",
        w.sim.url
    ))
    .unwrap();
    let token = rollout_dashboard::server::config::Secret::new(w.sim.launchdarkly_token.clone());
    let ld = rollout_dashboard::server::flags::launchdarkly_api::LaunchDarkly::new(
        &settings,
        Some(&token),
        Duration::from_secs(5),
    )
    .unwrap();
    let flag = ld.flag().await.unwrap();
    let ops = flag.patch_for("production", rollout_dashboard::server::flags::Percentage::new(90).unwrap()).unwrap();
    let stale = ld.patch(1, ops, "stale").await;
    assert!(
        matches!(stale, Err(rollout_dashboard::server::flags::launchdarkly_api::PatchError::Conflict(_))),
        "{stale:?}"
    );
    assert_eq!(ld_weights(&w), (2, 25_000, 75_000));

    // The kill switch.
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some("{}".into())).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(ld_weights(&w), (3, 0, 100_000));

    // A targeting rule makes the flag more than one percentage: shown as it is, no change offered.
    let mut flag = w.sim.launchdarkly.get("diary", "insulin_dose_split").unwrap();
    flag["environments"]["production"]["rules"] = serde_json::json!([{"_id": "r1", "clauses": [], "variation": 0}]);
    flag["_version"] = 4.into();
    w.sim.launchdarkly.put("diary", "insulin_dose_split", flag);
    let (_, state) = call(&w, As::Operator, "GET", "/api/v1/rollout", None).await;
    assert_eq!((state["percentage"].is_null(), state["writable"].as_bool()), (true, Some(false)), "{state}");
    assert!(state["raw"].as_str().unwrap().ends_with("1 targeting rule(s)"));
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(0, "4")).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("not_writable")), "{err}");
    assert_eq!(ld_weights(&w), (4, 0, 100_000));

    let targets: Vec<(String, String)> =
        sqlx::query_as("SELECT target, outcome FROM audit_log WHERE action LIKE 'flag.%' ORDER BY id")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert!(targets.iter().all(|t| t.0 == "launchdarkly:diary/production/insulin_dose_split"), "{targets:?}");
    let outcomes: Vec<&str> = targets.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(outcomes, ["done", "refused", "done", "refused"]);
}

#[sqlx::test(migrations = false)]
async fn launchdarkly_refusing_the_token_is_said_in_the_flag_panel(pool: PgPool) {
    let w = launchdarkly_world(pool, 25, Some("api-wrong")).await;
    let (status, report) = call(&w, As::Viewer, "GET", "/api/v1/status", None).await;
    assert_eq!(status, StatusCode::OK);
    let error = report["flag"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("LaunchDarkly refused the request: HTTP 401: Invalid access token"), "{report}");
    assert!(!error.contains("api-"), "the token never appears: {error}");
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some("{}".into())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(ld_weights(&w), (1, 25_000, 75_000));
}

// ---------------------------------------------------------------- Kubernetes errors, from tower-test mocks

mod kube_mocks {
    use super::*;
    use axum::http::{Request as HttpRequest, Response as HttpResponse};
    use kube::client::Body as KubeBody;
    use rollout_dashboard::server::cluster::ConditionalWriteError;
    use rollout_dashboard::server::error::{within, Source};
    use tower_test::mock;

    type Handle = mock::Handle<HttpRequest<KubeBody>, HttpResponse<KubeBody>>;

    fn mocked() -> (Cluster, Handle) {
        let (service, handle) = mock::pair::<HttpRequest<KubeBody>, HttpResponse<KubeBody>>();
        (Cluster::from_client(kube::Client::new(service, "diabetes"), "diabetes"), handle)
    }

    fn status(code: u16, reason: &str) -> HttpResponse<KubeBody> {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("mocked {reason}"), "reason": reason, "code": code});
        HttpResponse::builder().status(code).body(KubeBody::from(serde_json::to_vec(&body).unwrap())).unwrap()
    }

    fn configmap(version: &str) -> HttpResponse<KubeBody> {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "feature-flags", "namespace": "diabetes", "resourceVersion": version},
            "data": {"insulin_dose_split": "5"}});
        HttpResponse::new(KubeBody::from(serde_json::to_vec(&body).unwrap()))
    }

    #[tokio::test]
    async fn a_403_is_reported_as_refused_with_its_reason() {
        let (cluster, mut handle) = mocked();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.uri().path(), "/api/v1/namespaces/diabetes/configmaps/feature-flags");
            send.send_response(status(403, "Forbidden"));
        });
        let e = cluster.configmap("feature-flags").await.unwrap_err();
        assert!(matches!(e, SourceError::Rejected { .. }), "{e:?}");
        assert!(e.to_string().contains("403") && e.to_string().contains("Forbidden"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_409_on_replace_is_a_conflict_and_a_500_is_a_failure() {
        let (cluster, mut handle) = mocked();
        let server = tokio::spawn(async move {
            for answer in [409u16, 500] {
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!(req.method(), "GET");
                send.send_response(configmap("7"));
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!(req.method(), "PUT", "a replace carrying the resourceVersion");
                send.send_response(status(answer, if answer == 409 { "Conflict" } else { "InternalError" }));
            }
        });
        let e = cluster.replace_configmap_key("feature-flags", "insulin_dose_split", "25", "7").await.unwrap_err();
        assert!(matches!(e, ConditionalWriteError::Conflict { .. }), "{e:?}");
        let e = cluster.replace_configmap_key("feature-flags", "insulin_dose_split", "25", "7").await.unwrap_err();
        assert!(matches!(e, ConditionalWriteError::Source(SourceError::Rejected { .. })), "{e:?}");
        assert!(e.to_string().contains("500"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_version_is_refused_before_any_write() {
        let (cluster, mut handle) = mocked();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(configmap("8"));
            // No second request: nothing may be written.
            assert!(tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await.is_err());
        });
        let e = cluster.replace_configmap_key("feature-flags", "insulin_dose_split", "25", "7").await.unwrap_err();
        assert_eq!(e, ConditionalWriteError::Conflict { current_version: Some("8".into()) });
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_api_server_that_never_answers_times_out() {
        let (cluster, mut handle) = mocked();
        let server = tokio::spawn(async move {
            let (_req, send) = handle.next_request().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(send);
        });
        let e = within(Source::Kubernetes, Duration::from_millis(300), cluster.deployment_replicas("diary-writer"))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "Kubernetes did not answer within 0.3 s");
        server.abort();
    }
}

// ---------------------------------------------------------------- guarded rollback, for real

const BASE_REV: &str = "a1f3c2d4e5b6";
const SPLIT_REV: &str = "b7e9d1c0f2a3";

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo's real Alembic project against the test database.
fn alembic(url: &str, args: &[&str]) -> String {
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

struct RollbackWorld {
    w: ControlWorld,
    backup: std::path::PathBuf,
    /// The dashboard's settings file text and Prometheus's URL, to start a dashboard process.
    settings: String,
    prom_url: String,
    _dir: tempfile::TempDir,
}

/// The diary at the base revision with 40 legacy rows, dumped with pg_dump (the backup); then
/// upgraded to the split revision with 25 split rows; writers running at 3 replicas, flag 25.
async fn rollback_world(pool: PgPool, rollback_toml: &str) -> RollbackWorld {
    let url = url_of(&pool);
    alembic(&url, &["upgrade", BASE_REV]);
    sqlx::query("INSERT INTO history_records (user_id, dose) SELECT g, 4 FROM generate_series(1, 40) g")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("diary.dump");
    let out = std::process::Command::new("pg_dump").args(["-Fc", "-f"]).arg(&backup).arg(&url).output().unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    alembic(&url, &["upgrade", SPLIT_REV]);
    sqlx::query("INSERT INTO history_records (user_id, insulin_short, insulin_long) SELECT g, 4, 12 FROM generate_series(1, 25) g")
        .execute(&pool)
        .await
        .unwrap();
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, Some(pool.clone())).await;
    sim.spawn_writer(pool.clone(), 20.0);
    let settings = format!(
        "environment = \"staging-eu\"\nrefresh_interval_secs = 1\n[auth]\nmode = \"proxy\"\noperator_groups = [\"oncall\"]\n\
         viewer_groups = [\"analytics\"]\n[rollback]\nworking_dir = \"{demo}\"\nbackup_file = \"{backup}\"\n\
         diary_api_url = \"{sim}\"\npoll_interval_ms = 50\n\
         smoke_legacy_query = \"vector(10)\"\nsmoke_baseline_query = \"vector(5)\"\n{downgrade}{rollback_toml}\n",
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
        &[("ROLLOUT_PROXY_SECRET", SECRET)],
    )
    .await;
    let prom_url = prom.url.clone();
    let w = ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom };
    RollbackWorld { w, backup, settings, prom_url, _dir: dir }
}

async fn record_previous(w: &ControlWorld, previous: &str) {
    let body = format!(
        r#"{{"revision": "{SPLIT_REV}", "previous_revision": "{previous}", "note": "from the release notes"}}"#
    );
    let (status, entry) = call(w, As::Operator, "POST", "/api/v1/deploys", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
}

fn start_body(ack: i64, restore: bool) -> String {
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
async fn settle(w: &ControlWorld, id: i64) -> serde_json::Value {
    for _ in 0..1200 {
        let (_, run) = call(w, As::Viewer, "GET", &format!("/api/v1/rollback/{id}"), None).await;
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not settle in 120 s");
}

fn step<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM history_records").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn the_whole_rollback_runs_for_real_once_however_many_start_it(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    // Before the journal knows the previous revision, the plan says so and the start refuses.
    let (status, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["ready"], false);
    let pre = |plan: &serde_json::Value, name: &str| {
        plan["preconditions"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone()
    };
    assert_eq!(pre(&plan, "previous_revision_known")["passed"], false);
    record_previous(w, BASE_REV).await;

    let (_, plan) =
        call(w, As::Viewer, "POST", "/api/v1/rollback/plan", Some(r#"{"restore_data": true}"#.into())).await;
    assert_eq!(plan["ready"], true, "{plan}");
    assert_eq!((plan["from_revision"].as_str(), plan["target_revision"].as_str()), (Some(SPLIT_REV), Some(BASE_REV)));
    let loss = plan["data_loss_rows"].as_i64().unwrap();
    assert!(loss >= 25, "the 25 split rows and whatever the writers added: {loss}");
    // The dry run names the concrete commands and calls, and masks the database URL.
    let text = plan["steps"].to_string();
    assert!(text.contains(&format!("downgrade {BASE_REV}")), "{text}");
    assert!(text.contains("deployments/diary-writer/scale"), "{text}");
    assert!(text.contains("pg_restore --clean") && text.contains("--dbname=***"), "{text}");
    assert!(!text.contains("postgres://"), "no URL in the plan: {text}");
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rollback_runs").fetch_one(&w.pool).await.unwrap(), 0);

    // Refusals write nothing but the audit entry.
    let (status, _) = call(w, As::Viewer, "POST", "/api/v1/rollback", Some(start_body(loss, true))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut wrong_env: serde_json::Value = serde_json::from_str(&start_body(loss, true)).unwrap();
    wrong_env["confirm_environment"] = "production".into();
    let (status, err) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(wrong_env.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(start_body(loss - 20, true))).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("data_loss_not_acknowledged")), "{err}");
    let mut no_restore_word: serde_json::Value = serde_json::from_str(&start_body(loss, true)).unwrap();
    no_restore_word["restore_confirmation"] = serde_json::Value::Null;
    assert_eq!(
        call(w, As::Operator, "POST", "/api/v1/rollback", Some(no_restore_word.to_string())).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rollback_runs").fetch_one(&w.pool).await.unwrap(), 0);

    // 20 concurrent starts: one run. (The writers keep adding split rows until the run stops
    // them; the acknowledgement tolerates 1 % or 10 rows of drift since the plan.)
    let (_, plan) =
        call(w, As::Viewer, "POST", "/api/v1/rollback/plan", Some(r#"{"restore_data": true}"#.into())).await;
    let loss = plan["data_loss_rows"].as_i64().unwrap();
    let starts = (0..20).map(|_| call(w, As::Operator, "POST", "/api/v1/rollback", Some(start_body(loss, true))));
    let answers = futures::future::join_all(starts).await;
    let mut ids = std::collections::BTreeSet::new();
    for (status, run) in &answers {
        assert_eq!(*status, StatusCode::OK, "{run}");
        ids.insert(run["id"].as_i64().unwrap());
    }
    assert_eq!(answers.iter().filter(|(_, r)| r["joined"] == false).count(), 1, "one created, 19 joined");
    assert_eq!(ids.len(), 1, "exactly one run: {ids:?}");
    let id = *ids.iter().next().unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rollback_runs").fetch_one(&w.pool).await.unwrap(), 1);

    let run = settle(w, id).await;
    assert_eq!(run["state"], "done", "{run:#}");
    for s in run["steps"].as_array().unwrap() {
        assert_eq!(
            (s["name"].as_str(), s["state"].as_str(), s["attempts"].as_i64()),
            (s["name"].as_str(), Some("done"), Some(1)),
            "{s:#}"
        );
    }
    // The world, read independently.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'history_records' AND column_name LIKE 'insulin_%'",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert!(columns.is_empty(), "{columns:?}");
    let rev: String =
        sqlx::query_scalar("SELECT version_num::text FROM alembic_version").fetch_one(&w.pool).await.unwrap();
    assert_eq!(rev, BASE_REV);
    assert!(
        step(&run, "schema_downgrade")["output"]
            .as_str()
            .unwrap()
            .contains("Running downgrade b7e9d1c0f2a3 -> a1f3c2d4e5b6"),
        "{run:#}"
    );
    // pg_restore brought back exactly the backup's rows, plus what the writers and the smoke
    // check wrote after the restore (all legacy).
    let without_dose: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history_records WHERE dose IS NULL").fetch_one(&w.pool).await.unwrap();
    assert_eq!(without_dose, 0, "every row after the rollback is a legacy dose");
    let from_backup: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history_records WHERE id <= 40").fetch_one(&w.pool).await.unwrap();
    assert_eq!(from_backup, 40);
    assert!(step(&run, "restore_data")["output"].as_str().unwrap().contains("read back"), "{run:#}");
    assert!(rw.backup.exists());
    // Writers back at the remembered 3, the flag off, the smoke entry readable.
    assert_eq!(w.sim.cluster.snapshot().0.desired_replicas, 3);
    assert_eq!(flag_value(w), "0");
    assert_eq!(
        (run["memory"]["writer_replicas"].as_i64(), run["memory"]["flag_before"].as_str()),
        (Some(3), Some("25"))
    );
    let smoke = step(&run, "smoke_checks")["output"].as_str().unwrap().to_string();
    assert!(smoke.contains("→ 201") && smoke.contains("legacy rate 10.000/s"), "{smoke}");
    // The incident, as Markdown.
    let incident = run["incident_id"].as_i64().expect("an incident record");
    let resp = w
        .app
        .clone()
        .oneshot(Request::get(format!("/api/v1/incidents/{incident}.md")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let md = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(md.contains("# Incident: rollback of insulin_dose_split in staging-eu"), "{md}");
    assert!(
        md.contains("by ana") && md.contains("doubled doses reported by BI") && md.contains("## Postmortem"),
        "{md}"
    );
    assert!(!md.contains("postgres://"), "no URL in the incident");
    // Every transition is in the audit trail, once.
    let actions: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action, value_after FROM audit_log WHERE target = $1 ORDER BY id")
            .bind(format!("rollback run #{id}"))
            .fetch_all(&w.pool)
            .await
            .unwrap();
    let starts = actions.iter().filter(|a| a.0 == "rollback.start").count();
    let step_done = actions.iter().filter(|a| a.1.as_deref().is_some_and(|v| v.contains(": done in"))).count();
    assert_eq!((starts, step_done), (1, 8), "{actions:?}");
    assert_eq!(actions.last().unwrap().0, "rollback.done");
    // A new plan shows no active run, and the run is the latest.
    let (_, latest) = call(w, As::Viewer, "GET", "/api/v1/rollback", None).await;
    assert_eq!(latest["id"].as_i64(), Some(id));
}

#[sqlx::test(migrations = false)]
async fn a_failing_step_stops_the_run_until_retried_skipped_or_aborted(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    // The journal names a revision Alembic does not know: the real downgrade command fails.
    record_previous(w, "ffffffffffff").await;
    let start = |loss: i64| call(w, As::Operator, "POST", "/api/v1/rollback", Some(start_body(loss, false)));
    // The Kubernetes emulation fails: step 1 stops the run with Kubernetes's reason.
    w.sim.set_fault(Fault::Error);
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    let loss = plan["data_loss_rows"].as_i64().unwrap();
    let (status, run) = start(loss).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = settle(w, id).await;
    assert_eq!(run["state"], "stopped");
    let s1 = step(&run, "stop_writers");
    assert_eq!(s1["state"], "failed");
    assert!(s1["error"].as_str().unwrap().contains("Kubernetes refused the request"), "{s1}");
    // A second start joins the stopped run instead of starting another.
    let (_, again) = start(loss).await;
    assert_eq!((again["id"].as_i64(), again["joined"].as_bool()), (Some(id), Some(true)));
    // Viewers cannot act on it; unknown actions are 404.
    assert_eq!(
        call(w, As::Viewer, "POST", &format!("/api/v1/rollback/{id}/retry"), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(w, As::Operator, "POST", &format!("/api/v1/rollback/{id}/explode"), None).await.0,
        StatusCode::NOT_FOUND
    );

    // Kubernetes recovers; retry: steps 1 and 2 pass, the downgrade command fails.
    w.sim.set_fault(Fault::None);
    let (status, _) = call(w, As::Operator, "POST", &format!("/api/v1/rollback/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::OK);
    let run = settle(w, id).await;
    assert_eq!(run["state"], "stopped");
    let s1 = step(&run, "stop_writers");
    assert_eq!((s1["state"].as_str(), s1["attempts"].as_i64()), (Some("done"), Some(2)));
    assert_eq!(step(&run, "flag_off")["state"], "done");
    assert_eq!(flag_value(w), "0");
    let s3 = step(&run, "schema_downgrade");
    assert_eq!(s3["state"], "failed");
    assert!(s3["output"].as_str().unwrap().contains("Can't locate revision identified by 'ffffffffffff'"), "{s3:#}");
    // The writers really stopped writing while scaled to 0.
    assert_eq!(w.sim.cluster.snapshot().0.desired_replicas, 0);
    let stopped_at = rows(&w.pool).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rows(&w.pool).await, stopped_at, "no writes while the writers are at 0");

    // Skipping needs a reason; then verify finds the split columns still there.
    let skip = format!("/api/v1/rollback/{id}/skip");
    assert_eq!(call(w, As::Operator, "POST", &skip, None).await.0, StatusCode::BAD_REQUEST);
    let (status, _) =
        call(w, As::Operator, "POST", &skip, Some(r#"{"reason": "downgrade done by hand"}"#.into())).await;
    assert_eq!(status, StatusCode::OK);
    let run = settle(w, id).await;
    assert_eq!(step(&run, "schema_downgrade")["skip_reason"], "downgrade done by hand");
    let s4 = step(&run, "verify_schema");
    assert_eq!(s4["state"], "failed");
    assert!(s4["error"].as_str().unwrap().contains("history_records still has insulin_long and insulin_short"), "{s4}");
    assert_eq!(run["state"], "stopped");

    // Abort: the run ends, its incident is recorded, and a new plan sees no active run.
    let (status, run) = call(
        w,
        As::Operator,
        "POST",
        &format!("/api/v1/rollback/{id}/abort"),
        Some(r#"{"reason": "fixing by hand"}"#.into()),
    )
    .await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("aborted")), "{run}");
    assert!(run["incident_id"].is_i64());
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    assert!(plan["active_run"].is_null());
    assert_eq!(
        call(w, As::Operator, "POST", &format!("/api/v1/rollback/{id}/retry"), None).await.0,
        StatusCode::CONFLICT
    );
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_log WHERE action LIKE 'rollback.%' AND outcome <> 'done' ORDER BY id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    let refused: Vec<&str> = outcomes.iter().filter(|o| o.1 == "refused").map(|o| o.0.as_str()).collect();
    assert_eq!(refused, ["rollback.retry", "rollback.skip", "rollback.retry"], "{outcomes:?}");
}

#[sqlx::test(migrations = false)]
async fn a_step_past_its_time_limit_stops_the_run(pool: PgPool) {
    let rw =
        rollback_world(pool, "step_timeout_secs = 2\ndowngrade = { kind = \"command\", argv = [\"sleep\", \"30\"] }")
            .await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    let (status, run) = call(
        w,
        As::Operator,
        "POST",
        "/api/v1/rollback",
        Some(start_body(plan["data_loss_rows"].as_i64().unwrap(), false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let t0 = std::time::Instant::now();
    let run = settle(w, run["id"].as_i64().unwrap()).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "the sleep was killed, not waited for");
    let s3 = step(&run, "schema_downgrade");
    assert_eq!(s3["state"], "failed");
    assert_eq!(s3["error"], "timed out after 2 s (rollback.step_timeout_secs)");
}

/// The dashboard as a real process (the binary cargo built for these tests), so it can be killed.
struct DashboardProcess {
    child: std::process::Child,
    url: String,
}

impl DashboardProcess {
    fn start(env: Vec<(String, String)>) -> DashboardProcess {
        let addr = env.iter().find(|(k, _)| k == "LEPTOS_SITE_ADDR").unwrap().1.clone();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollout-dashboard"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .current_dir(repo())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        DashboardProcess { child, url: format!("http://{addr}") }
    }

    async fn ready(&self) {
        for _ in 0..300 {
            if reqwest::get(format!("{}/readyz", self.url)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dashboard process did not become ready");
    }

    /// SIGKILL: no shutdown, no cleanup, as when the node dies.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn post(&self, path: &str, body: Option<String>) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("origin", &self.url)
            .header("content-type", "application/json")
            .header("x-forwarded-user", "ana")
            .header("x-forwarded-groups", "oncall")
            .header("x-proxy-secret", SECRET)
            .body(body.unwrap_or_default())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or_default())
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap().json().await.unwrap()
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[sqlx::test(migrations = false)]
async fn a_run_killed_with_sigkill_after_the_downgrade_resumes_without_repeating_steps(pool: PgPool) {
    // The downgrade command holds for a while after migrating: the kill lands after step 3 acted
    // and before step 4 began.
    let scripts = tempfile::tempdir().unwrap();
    let wrapper = scripts.path().join("downgrade-then-hold.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\"{}\" -c services/api/alembic/alembic.ini downgrade \"$1\" || exit $?\necho 'downgraded; holding'\nsleep 30\n",
            repo().join("demo/.venv/bin/alembic").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rw = rollback_world(
        pool,
        &format!("downgrade = {{ kind = \"command\", argv = [\"{}\", \"{{previous_revision}}\"] }}", wrapper.display()),
    )
    .await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let settings_file = scripts.path().join("settings.toml");
    std::fs::write(&settings_file, &rw.settings).unwrap();
    let env: Vec<(String, String)> = [
        ("STATE_DATABASE_URL", url_of(&w.pool)),
        ("DATABASE_URL", url_of(&w.pool)),
        ("PROMETHEUS_URL", rw.prom_url.clone()),
        ("KUBECONFIG", w.sim.kubeconfig.display().to_string()),
        ("ROLLOUT_CONFIG", settings_file.display().to_string()),
        ("ROLLOUT_PROXY_SECRET", SECRET.to_string()),
        ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", free_port())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut dash = DashboardProcess::start(env.clone());
    dash.ready().await;
    let plan = dash.post("/api/v1/rollback/plan", None).await.1;
    assert_eq!(plan["ready"], true, "{plan}");
    let (status, run) =
        dash.post("/api/v1/rollback", Some(start_body(plan["data_loss_rows"].as_i64().unwrap(), false))).await;
    assert_eq!(status, 200, "{run}");
    let id = run["id"].as_i64().unwrap();
    // Wait until the downgrade really happened and the command is holding.
    let mut at_target = false;
    for _ in 0..600 {
        let rev: Option<String> =
            sqlx::query_scalar("SELECT version_num::text FROM alembic_version").fetch_optional(&w.pool).await.unwrap();
        if rev.as_deref() == Some(BASE_REV) {
            at_target = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(at_target, "the downgrade ran");
    dash.kill();
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT name, state FROM rollback_steps WHERE run_id = $1 AND idx <= 4 ORDER BY idx")
            .bind(id)
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert_eq!(
        states.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect::<Vec<_>>(),
        [("stop_writers", "done"), ("flag_off", "done"), ("schema_downgrade", "running"), ("verify_schema", "pending")],
        "killed between steps 3 and 4"
    );

    // Restarted: the run shows as interrupted at the exact step.
    let dash = DashboardProcess::start(env);
    dash.ready().await;
    let mut run = serde_json::Value::Null;
    for _ in 0..100 {
        run = dash.get(&format!("/api/v1/rollback/{id}")).await;
        if run["state"] == "interrupted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run["state"], "interrupted", "{run:#}");
    assert_eq!(step(&run, "schema_downgrade")["state"], "interrupted");
    // Resume: step 3 finds the schema already at the target and runs nothing; 1 and 2 are not repeated.
    let (status, _) = dash.post(&format!("/api/v1/rollback/{id}/retry"), None).await;
    assert_eq!(status, 200);
    for _ in 0..600 {
        run = dash.get(&format!("/api/v1/rollback/{id}")).await;
        if run["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run["state"], "done", "{run:#}");
    let attempts: Vec<i64> = run["steps"].as_array().unwrap().iter().map(|s| s["attempts"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 1, 2, 1, 0, 1, 1, 1], "only the interrupted step ran again");
    assert!(step(&run, "schema_downgrade")["output"]
        .as_str()
        .unwrap()
        .contains("already at the target revision: nothing to run"));
    // The audit trail: nothing lost, nothing twice.
    let notes: Vec<String> = sqlx::query_scalar(
        "SELECT action || ' ' || coalesce(value_after, '') FROM audit_log WHERE target = $1 ORDER BY id",
    )
    .bind(format!("rollback run #{id}"))
    .fetch_all(&w.pool)
    .await
    .unwrap();
    let count = |prefix: &str| notes.iter().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(count("rollback.step step 1 stop_writers: done"), 1, "{notes:#?}");
    assert_eq!(count("rollback.step step 3 schema_downgrade: running"), 2, "{notes:#?}");
    assert_eq!(count("rollback.step step 3 schema_downgrade: interrupted"), 1, "{notes:#?}");
    assert_eq!(count("rollback.step step 3 schema_downgrade: done"), 1, "{notes:#?}");
    assert_eq!(count("rollback.interrupted"), 1, "{notes:#?}");
    assert_eq!(count("rollback.done"), 1, "{notes:#?}");
}

#[sqlx::test(migrations = false)]
async fn with_approval_required_a_second_operator_approves(pool: PgPool) {
    let rw = rollback_world(pool, "require_approval = true").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    assert_eq!(plan["require_approval"], true);
    let (status, run) = call(
        w,
        As::Operator,
        "POST",
        "/api/v1/rollback",
        Some(start_body(plan["data_loss_rows"].as_i64().unwrap(), false)),
    )
    .await;
    assert_eq!((status, run["state"].as_str()), (StatusCode::OK, Some("awaiting_approval")), "{run}");
    let id = run["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.sim.cluster.snapshot().0.desired_replicas, 3, "nothing happens before the approval");
    // While a run is active, the rollout's increase guard says so.
    let (_, rollout) = call(w, As::Viewer, "GET", "/api/v1/rollout", None).await;
    let guard =
        rollout["guards"].as_array().unwrap().iter().find(|g| g["name"] == "no_rollback_in_progress").unwrap().clone();
    assert_eq!(
        (guard["passed"].as_bool(), guard["reason"].as_str()),
        (Some(false), Some(format!("rollback run #{id} is awaiting_approval").as_str()))
    );
    let approve = format!("/api/v1/rollback/{id}/approve");
    let (status, err) = call(w, As::Operator, "POST", &approve, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the starter cannot approve: {err}");
    let (status, run) = call(w, As::OtherOperator, "POST", &approve, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["approved_by"], "cy");
    let run = settle(w, id).await;
    assert_eq!(run["state"], "done", "{run:#}");
    let approvals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'rollback.approve' AND actor = 'cy' AND outcome = 'done'",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(approvals, 1);
}

#[sqlx::test(migrations = false)]
async fn an_emergency_bypass_starts_at_once_and_is_recorded(pool: PgPool) {
    let rw = rollback_world(pool, "require_approval = true").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    let mut body: serde_json::Value =
        serde_json::from_str(&start_body(plan["data_loss_rows"].as_i64().unwrap(), false)).unwrap();
    body["emergency_bypass_reason"] = "3 a.m., nobody else on call answers".into();
    let (status, run) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["bypass_reason"], "3 a.m., nobody else on call answers");
    let run = settle(w, run["id"].as_i64().unwrap()).await;
    assert_eq!(run["state"], "done", "{run:#}");
    let detail: String =
        sqlx::query_scalar("SELECT outcome_detail FROM audit_log WHERE action = 'rollback.start' AND outcome = 'done'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(detail, "approval bypassed in an emergency: 3 a.m., nobody else on call answers");
}

#[sqlx::test(migrations = false)]
async fn the_deploy_journal_records_deploys_and_knows_a_rollback_from_an_upgrade(pool: PgPool) {
    use rollout_dashboard::server::rollback::deploys;
    diary_schema(&pool).await; // at b7e9d1c0f2a3
    let state = dashboard_state(&pool, Some(&pool), None, None).await;
    let set_rev = |rev: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query("UPDATE alembic_version SET version_num = $1").bind(rev).execute(&pool).await.unwrap();
        }
    };
    deploys::observe_once(&state).await.unwrap();
    deploys::observe_once(&state).await.unwrap(); // unchanged: nothing new
    assert_eq!(deploys::previous_of(&state.state_db, SPLIT_REV).await.unwrap(), None);
    deploys::insert(&state.state_db, SPLIT_REV, Some(BASE_REV), "operator", "ana", None).await.unwrap();
    set_rev(BASE_REV).await; // a rollback
    deploys::observe_once(&state).await.unwrap();
    set_rev(SPLIT_REV).await; // deployed again
    deploys::observe_once(&state).await.unwrap();
    let entries = deploys::list(&state.state_db, 10).await.unwrap();
    let seen: Vec<(&str, Option<&str>, &str)> = entries
        .iter()
        .rev()
        .map(|e| (e.revision.as_str(), e.previous_revision.as_deref(), e.source.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (SPLIT_REV, None, "observed"),
            (SPLIT_REV, Some(BASE_REV), "operator"),
            (BASE_REV, None, "observed"), // rolled back: its own previous is unknown, not b7e9
            (SPLIT_REV, Some(BASE_REV), "observed"),
        ]
    );
    assert_eq!(entries[1].note.as_deref(), Some("rolled back from b7e9d1c0f2a3"));
}

// ---------------------------------------------------------------- reports for BI

async fn get_raw(app: &axum::Router, path: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap().to_vec())
}

fn csv_rows(body: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn report_csvs_count_every_dose_once_and_match_independent_sql(pool: PgPool) {
    diary_schema(&pool).await;
    // Three days of rows of every kind, at fixed hours; one at 22:30 UTC, which is the next day in +03:00.
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long, note)
         SELECT 1, date_trunc('day', now()) - (d || ' days')::interval + (h || ' hours')::interval, dose, s, l, NULL
         FROM (VALUES (6.0, NULL, NULL), (NULL, 4.0, NULL), (NULL, NULL, 12.0), (NULL, 4.5, 10.0),
                      (8.0, 8.0, 8.0), (4.0, 4.0, 12.0), (NULL, NULL, NULL)) AS v(dose, s, l),
              generate_series(1, 3) d, (VALUES (2), (9)) AS hh(h);
         INSERT INTO history_records (user_id, created_at, dose) VALUES (2, date_trunc('day', now()) - interval '90 minutes', 7);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let state =
        dashboard_state_with(&pool, Some(url_of(&pool)), None, None, Some("[reports]\ntime_zone = \"+03:00\"\n")).await;
    let app = rollout_dashboard::site::app(state);

    let (status, ct, body) = get_raw(&app, "/api/v1/reports/insulin-units.csv?range=7d").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "text/csv; charset=utf-8"));
    let rows = csv_rows(&body);
    assert_eq!(
        rows[0],
        [
            "time (UTC+03:00)",
            "short (insulin_short + legacy dose) (IU)",
            "long (insulin_long) (IU)",
            "DOUBLED rows' dose (not in the totals) (IU)"
        ]
    );
    let total = |col: usize| rows[1..].iter().map(|r| r[col].parse::<f64>().unwrap()).sum::<f64>();
    // Independent SQL: the guide's rules written as plain WHERE clauses.
    let (short, long, doubled): (f64, f64, f64) = sqlx::query_as(
        "SELECT
           (SELECT coalesce(sum(insulin_short), 0)::float8 FROM history_records
              WHERE NOT (dose IS NOT NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_short = dose AND insulin_long = dose))
         + (SELECT coalesce(sum(dose), 0)::float8 FROM history_records WHERE insulin_short IS NULL AND insulin_long IS NULL),
           (SELECT coalesce(sum(insulin_long), 0)::float8 FROM history_records
              WHERE NOT (dose IS NOT NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_short = dose AND insulin_long = dose)),
           (SELECT coalesce(sum(dose), 0)::float8 FROM history_records WHERE insulin_short = dose AND insulin_long = dose)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total(1), total(2), total(3)), (short, long, doubled));
    // By hand: per day, 2 × (6 legacy + 4 + 4.5 + 4) short, 2 × (12 + 10 + 12) long, 2 × 8 doubled.
    assert_eq!((short, long, doubled), (3.0 * 37.0 + 7.0, 3.0 * 68.0, 3.0 * 16.0));
    // The 22:30 UTC row (yesterday in UTC) belongs to the UTC date of today in +03:00, where it is
    // the only short dose: the other rows of that date are the seeded days' 02:00 and 09:00 UTC,
    // which start at yesterday. (Not simply the last row: from 21:00 UTC on, +03:00 is a day ahead.)
    let utc_today: String = sqlx::query_scalar("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let today = rows.iter().find(|r| r[0] == utc_today).unwrap_or_else(|| panic!("no row {utc_today}: {rows:?}"));
    assert_eq!(today[1..], ["7", "0", "0"], "{rows:?}");

    let (_, _, body) = get_raw(&app, "/api/v1/reports/record-categories.csv?range=7d").await;
    let rows = csv_rows(&body);
    assert_eq!(
        rows[0][1..],
        ["legacy only (dose)", "short only", "long only", "both parts", "DOUBLED (defect)", "empty (no dose)"]
    );
    let sum_col = |c: usize| rows[1..].iter().map(|r| r[c].parse::<i64>().unwrap()).sum::<i64>();
    // legacy only: 6 legacy rows + the 7-unit row; short only 6; long only 6; both: 6 + the dose-beside-split 6; doubled 6; empty 6.
    assert_eq!((1..=6).map(sum_col).collect::<Vec<_>>(), [7, 6, 6, 12, 6, 6]);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM history_records").fetch_one(&pool).await.unwrap();
    assert_eq!((1..=6).map(sum_col).sum::<i64>(), all, "every row in exactly one category");

    // The SVG names its series, axis units and time zone; the PNG decodes at the asked size.
    let (status, ct, svg) = get_raw(&app, "/api/v1/reports/insulin-units.svg?range=7d").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/svg+xml"));
    let svg = String::from_utf8(svg).unwrap();
    for needle in [
        "short (insulin_short + legacy dose)",
        "long (insulin_long)",
        "DOUBLED rows&apos; dose (not in the totals)",
        "insulin units (IU) per day",
        "time (UTC+03:00)",
    ] {
        assert!(svg.contains(needle) || svg.contains(&needle.replace("&apos;", "'")), "{needle} missing");
    }
    let (status, ct, png_bytes) =
        get_raw(&app, "/api/v1/reports/record-categories.png?range=7d&width=640&height=300").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 300));
    let pixels = &buf[..info.buffer_size()];
    let non_white = pixels.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    let vermillion = pixels.chunks(3).filter(|p| p == &[0xD5, 0x5E, 0x00]).count();
    assert!(non_white > 5_000, "not blank: {non_white} non-white pixels");
    assert!(vermillion > 50, "the doubled series is drawn: {vermillion} vermillion pixels");

    // Bad requests.
    for (path, want) in [
        ("/api/v1/reports/nope.csv", StatusCode::NOT_FOUND),
        ("/api/v1/reports/usage.pdf", StatusCode::NOT_FOUND),
        ("/api/v1/reports/usage", StatusCode::NOT_FOUND),
        ("/api/v1/reports/insulin-units.csv?range=1y", StatusCode::BAD_REQUEST),
        ("/api/v1/reports/insulin-units.png?width=10", StatusCode::BAD_REQUEST),
        ("/api/v1/reports/insulin-units.png?colour=red", StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = get_raw(&app, path).await;
        assert_eq!(status, want, "{path}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(err["error"].is_string(), "{path}: {err}");
    }
    // Without Prometheus, the Prometheus charts say so (503); the database ones still answer.
    assert_eq!(get_raw(&app, "/api/v1/reports/usage.csv").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrations = false)]
async fn the_rules_on_the_page_are_the_rules_the_sql_applies(pool: PgPool) {
    use rollout_dashboard::server::reports::{daily, rules};
    diary_schema(&pool).await;
    let examples = rules();
    for r in &examples {
        sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (1, now() - interval '1 hour', $1, $2, $3)")
            .bind(r.dose)
            .bind(r.insulin_short)
            .bind(r.insulin_long)
            .execute(&pool)
            .await
            .unwrap();
    }
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    let now = chrono::Utc::now();
    let (days, _) = daily(&diary, &schema, now - chrono::Duration::hours(2), now, Default::default()).await.unwrap();
    let sum = |f: fn(&rollout_dashboard::server::reports::DayRow) -> f64| days.iter().map(f).sum::<f64>();
    assert_eq!(sum(|d| d.short_units), examples.iter().map(|r| r.short_units).sum::<f64>());
    assert_eq!(sum(|d| d.long_units), examples.iter().map(|r| r.long_units).sum::<f64>());
    assert_eq!(sum(|d| d.doubled_units), examples.iter().map(|r| r.doubled_units).sum::<f64>());
    let count = |cat: &str| examples.iter().filter(|r| r.category == cat).count() as i64;
    let n = |f: fn(&rollout_dashboard::server::reports::DayRow) -> i64| days.iter().map(f).sum::<i64>();
    assert_eq!(
        [
            n(|d| d.legacy_only),
            n(|d| d.short_only),
            n(|d| d.long_only),
            n(|d| d.both),
            n(|d| d.doubled),
            n(|d| d.empty)
        ],
        [
            count("legacy_only"),
            count("short_only"),
            count("long_only"),
            count("both"),
            count("doubled"),
            count("empty")
        ]
    );
}

// ---------------------------------------------------------------- who may call what: the whole table

#[sqlx::test(migrations = false)]
async fn every_route_and_server_function_answers_each_role_as_the_access_table_says(pool: PgPool) {
    use rollout_dashboard::server::access::{Access, ROUTES, SERVER_FNS};
    let w = control_world(pool, "5").await;
    // Every server function the pages can call is in the table, and nothing else.
    let mut registered: Vec<String> =
        leptos::server_fn::axum::server_fn_paths().map(|(p, _)| p.trim_start_matches("/api/").to_string()).collect();
    registered.sort();
    let mut listed: Vec<String> = SERVER_FNS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(registered, listed);

    let fn_request = |name: &str| -> (&'static str, String, Option<String>, &'static str) {
        match name {
            "overview" => ("GET", "/api/overview?range=24h&window=24h".into(), None, ""),
            "rollback" => ("GET", "/api/rollback?restore_data=false".into(), None, ""),
            "rollback_run" => ("GET", "/api/rollback_run?id=1".into(), None, ""),
            "reports" => ("GET", "/api/reports?range=7d".into(), None, ""),
            "status" | "me" | "audit" | "rollout" | "rollback_progress" => ("GET", format!("/api/{name}"), None, ""),
            "rollout_set" => (
                "POST",
                "/api/rollout_set".into(),
                Some("percentage=10&reason=r&expected_version=x&override_guards=false".into()),
                "application/x-www-form-urlencoded",
            ),
            "rollout_kill" => {
                ("POST", "/api/rollout_kill".into(), Some(String::new()), "application/x-www-form-urlencoded")
            }
            "rollback_start" => (
                "POST",
                "/api/rollback_start".into(),
                Some(
                    r#"{"body": {"reason": "r", "confirm_environment": "x", "acknowledge_data_loss_rows": 0}}"#.into(),
                ),
                "application/json",
            ),
            "rollback_act" => (
                "POST",
                "/api/rollback_act".into(),
                Some(r#"{"id": 1, "action": "retry", "reason": null}"#.into()),
                "application/json",
            ),
            "deploy_record" => (
                "POST",
                "/api/deploy_record".into(),
                Some(r#"{"body": {"revision": "b", "previous_revision": "a"}}"#.into()),
                "application/json",
            ),
            other => panic!("no request written for server function {other}"),
        }
    };
    let mut cases: Vec<(String, String, Option<String>, &str, Access)> = ROUTES
        .iter()
        .map(|(m, _, p, a)| {
            let body = (*m == "POST").then(|| {
                if p.starts_with("/auth/login") {
                    "username=x&password=y".into()
                } else {
                    "{}".into()
                }
            });
            let ct = if p.starts_with("/auth/") { "application/x-www-form-urlencoded" } else { "application/json" };
            (m.to_string(), p.to_string(), body, ct, *a)
        })
        .collect();
    for (name, access) in SERVER_FNS {
        let (m, p, body, ct) = fn_request(name);
        cases.push((m.into(), p, body, ct, *access));
    }
    let mut failures = Vec::new();
    for (method, path, body, ct, access) in &cases {
        for who in [As::Anonymous, As::Viewer, As::Operator] {
            let mut req = Request::builder()
                .method(method.as_str())
                .uri(path.as_str())
                .header("origin", ORIGIN)
                .header("content-type", *ct);
            if !matches!(who, As::Anonymous) {
                let (user, group) = if matches!(who, As::Viewer) { ("bo", "analytics") } else { ("ana", "oncall") };
                req = req
                    .header("x-forwarded-user", user)
                    .header("x-forwarded-groups", group)
                    .header("x-proxy-secret", SECRET);
            }
            let resp =
                w.app.clone().oneshot(req.body(Body::from(body.clone().unwrap_or_default())).unwrap()).await.unwrap();
            let status = resp.status();
            let text =
                String::from_utf8_lossy(&axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap()).to_string();
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            let ok = match (access, who) {
                // Signing in with a wrong password is 401 for everyone: the route itself is open.
                (Access::Anyone, _) if path.starts_with("/auth/login") => status != StatusCode::FORBIDDEN,
                (Access::Anyone, _) => !refused,
                (Access::SignedIn, As::Anonymous) => status == StatusCode::UNAUTHORIZED,
                (Access::SignedIn, _) => !refused,
                (Access::Operator, As::Anonymous) => status == StatusCode::UNAUTHORIZED,
                (Access::Operator, As::Viewer) => status == StatusCode::FORBIDDEN,
                (Access::Operator, _) => !refused,
            };
            // A 404 must be the service's own answer (no such run), never a route that is gone.
            let routed = status != StatusCode::NOT_FOUND || text.contains("not_found") || text.contains("there is no");
            if !ok || !routed {
                failures.push(format!("{method} {path} as {who:?}: {status} {}", &text[..text.len().min(160)]));
            }
        }
    }
    assert!(failures.is_empty(), "{} answers differ from the table:\n{}", failures.len(), failures.join("\n"));
    // Only the operator changed anything (the kill switch, which needs no more than the role).
    let done: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM audit_log WHERE outcome = 'done' ORDER BY id")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert!(!done.is_empty() && done.iter().all(|(actor, _)| actor == "ana"), "{done:?}");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM rollback_runs").fetch_one(&w.pool).await.unwrap();
    assert_eq!(runs, 0, "no rollback started: the walk's start bodies fail their checks");
}

#[sqlx::test(migrations = false)]
async fn no_audit_entry_is_lost_when_the_state_database_refuses_or_the_dashboard_dies(pool: PgPool) {
    use rollout_dashboard::server::audit::NewEntry;
    use rollout_dashboard::server::audit_journal::{AuditJournal, Replayed};
    let w = control_world(pool.clone(), "25").await;
    let journal = w.state.journal.clone();
    let _ = std::fs::remove_file(journal.path());

    // The state database cannot take audit entries: the kill switch still works, and its entry
    // waits in the journal with the time it happened.
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away").execute(&pool).await.unwrap();
    let (status, body) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason":"alarm"}"#.into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(flag_value(&w), "0");
    let killed_at = chrono::Utc::now();
    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log").execute(&pool).await.unwrap();
    assert!(audit_rows(&w).await.is_empty());
    assert!(!journal.is_empty());

    // A previous process journaled a change and died before recording it.
    let previous = AuditJournal::new(journal.path().to_path_buf());
    let died = NewEntry {
        actor: "ana".into(),
        role: "operator".into(),
        action: "flag.set".into(),
        target: "diabetes/feature-flags/insulin_dose_split".into(),
        value_before: None,
        value_after: None,
        reason: Some("step two".into()),
        outcome: rollout_dashboard::api::audit::Outcome::Done,
        outcome_detail: None,
        request_id: Some("req-died".into()),
    };
    previous.intent(&died).unwrap();
    drop(previous);

    let r = journal.replay(&pool, Some("0".into())).await.unwrap();
    assert_eq!(r, Replayed { recorded: 2, interrupted: 1, already_there: 0 });
    type Row = (String, String, Option<String>, Option<String>, chrono::DateTime<chrono::Utc>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT action, outcome, value_after, outcome_detail, at FROM audit_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_deref()), ("flag.kill", "done", Some("0")));
    assert!(rows[0].4 <= killed_at, "the kill keeps the time it happened");
    assert_eq!((rows[1].0.as_str(), rows[1].1.as_str()), ("flag.set", "failed"));
    assert!(rows[1].3.as_deref().unwrap().starts_with("interrupted"), "{:?}", rows[1].3);
    assert!(rows[1].3.as_deref().unwrap().contains("read 0"));
    assert!(journal.is_empty(), "a fully recorded journal is emptied");

    // Replaying again, or a journal line replayed twice, records nothing twice.
    assert_eq!(journal.replay(&pool, None).await.unwrap(), Replayed::default());
    let again = AuditJournal::new(journal.path().to_path_buf());
    again.settle(&NewEntry { outcome_detail: Some("dup".into()), ..died }, false);
    assert_eq!(journal.replay(&pool, None).await.unwrap().already_there, 1);
    assert_eq!(audit_rows(&w).await.len(), 2);

    // A normal change leaves nothing in the journal.
    let (status, body) = call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some("{}".into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(journal.is_empty());
    assert_eq!(audit_rows(&w).await.len(), 3);
}
