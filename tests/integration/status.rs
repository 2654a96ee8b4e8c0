//! The status service and its REST door; outside systems going away and coming back; many viewers, one backend query; the records and adoption APIs.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::cluster::Fault;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::status::collect;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::{
    dashboard_state, dashboard_state_with, diary_fixture, diary_schema, free_port, url_of, PgProxy, PrometheusHarness,
    SimulatorHarness,
};

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
    // A source never read has no "since": the sentence does not end in an empty time.
    assert!(!html.contains("Failing since"), "{html}");
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

/// The overview's 24-hour check uses the autopilot's definition: a healthy 25 % rollout, whose
/// legacy share is about 75 %, passes (it read "fail" against the 5 % target meant for 100 %).
#[sqlx::test(migrations = false)]
async fn a_healthy_partial_rollout_passes_the_24_hour_check(pool: PgPool) {
    use rollout_dashboard::api::adoption::CheckOutcome;
    let prom = PrometheusHarness::start(&synthetic(0.5, 1.5, 3 * 86400, 3600, 60));
    let started = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let settings = format!("[adoption]\nlegacy_share_target = 0.05\nrollout_started_at = \"{started}\"\n");
    for (flag, want) in
        [("25", CheckOutcome::Pass), ("5", CheckOutcome::Pass), ("50", CheckOutcome::Fail), ("100", CheckOutcome::Fail)]
    {
        let sim = SimulatorHarness::start(flag, 3, None).await;
        let state = dashboard_state_with(&pool, None, Some(&prom.url), Some(&sim.kubeconfig), Some(&settings)).await;
        let a = rollout_dashboard::server::service::adoption(&state, "24h".parse().unwrap()).await.unwrap();
        assert_eq!(a.check.outcome, want, "flag {flag}: {}", a.check.message);
        assert!((a.check.share_24h.unwrap() - 0.75).abs() < 1e-9);
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
