//! The diary database, Prometheus and Kubernetes (emulated over HTTP, and mocked with tower-test for its errors), each as the dashboard reads it.

use std::time::Duration;

use diary_writer::cluster::Fault;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::cluster::Cluster;
use rollout_dashboard::server::config::KubeAccess;
use rollout_dashboard::server::error::SourceError;
use rollout_dashboard::server::prometheus::Prometheus;
use rollout_dashboard::server::records::DiaryRecords;
use sqlx::PgPool;

use crate::support::{diary_fixture, diary_schema, free_port, write_kubeconfig, PrometheusHarness, SimulatorHarness};

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
    let opts = diary_writer::seed::SeedOptions {
        days: 7.0,
        rows: 20_000,
        doubled_every: 499,
        users: 500,
        ..Default::default()
    };
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
    // One series per app version that writes split (the live exporter has one per version).
    let samples = client.instant("split_dose_saved_total").await.unwrap();
    let mut versions: Vec<&str> =
        samples.iter().map(|s| s.labels.get("client_version").map(String::as_str).unwrap_or("")).collect();
    versions.sort_unstable();
    assert_eq!(versions, ["4.0.0", "4.1.0"]);
    assert!(samples.iter().all(|s| s.labels.get("service").map(String::as_str) == Some("diary-api")));

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

    // The shipped Role names only feature-flags: another map is forbidden before it is looked
    // up, as RBAC does; with every call allowed, a missing map is said to be missing.
    let e = cluster.configmap("no-such-map").await.unwrap_err();
    assert!(e.to_string().contains("may not get configmaps \"no-such-map\""), "{e}");
    sim.cluster.set_role(None);
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
