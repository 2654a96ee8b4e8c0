//! Legacy and split writes by app version against a real Prometheus holding the counters'
//! history by `client_version` (the synthetic history: split 1.2/s from 4.1.0 and 0.7/s from
//! 4.0.0, legacy 0.05/s from 3.1.4 and 0.02/s from 4.0.0), and the two checks that read them.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::support::autopilot::{autopilot_world_with, start_body};
use crate::support::control::{call, As, SECRET};

/// `path` read as the viewer: the body as text.
async fn viewer_text(app: &axum::Router, path: &str) -> String {
    use tower::ServiceExt;
    let req = axum::http::Request::get(path)
        .header("x-forwarded-user", "bo")
        .header("x-forwarded-groups", "analytics")
        .header("x-proxy-secret", SECRET)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

#[sqlx::test(migrations = false)]
async fn the_versions_table_counts_each_versions_writes_and_split_only_versions_writing_legacy_fail(pool: PgPool) {
    let w = autopilot_world_with(pool, "0", "\n[client_versions]\nsplit_only = \">= 4.0.0\"\n").await;

    // The hour is wholly inside the history: each count is its rate times 3,600 s.
    let (status, v) = call(&w, As::Viewer, "GET", "/api/v1/adoption/versions?range=1h", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let rows: Vec<(String, i64, i64, bool)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap();
            (r["version"].as_str().unwrap().to_string(), n("legacy_writes"), n("split_writes"), r["split_only"] == true)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("3.1.4".to_string(), 180, 0, false),
            ("4.0.0".to_string(), 72, 2520, true),
            ("4.1.0".to_string(), 0, 4320, true)
        ],
        "sorted by legacy writes: {v}"
    );
    assert_eq!((v["legacy_writes"].as_i64(), v["split_writes"].as_i64()), (Some(252), Some(6840)));
    let share = |i: usize, k: &str| v["versions"][i][k].as_f64().unwrap();
    assert!((share(1, "legacy_share") - 72.0 / 2592.0).abs() < 1e-9, "{v}");
    assert!((share(0, "share_of_legacy") - 180.0 / 252.0).abs() < 1e-6, "{v}");
    assert_eq!(v["blame"], "100 % of legacy writes come from 3.1.4 and 4.0.0", "71 % is not enough: {v}");
    assert_eq!(v["violations"], serde_json::json!(["4.0.0"]));
    assert!(v["versions"][0]["first_seen"].is_string() && v["versions"][0]["last_seen"].is_string(), "{v}");

    // The same numbers as CSV; a bad range is a 400 with a sentence.
    let csv = viewer_text(&w.app, "/api/v1/adoption/versions.csv?range=1h").await;
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("client_version,legacy writes,split writes,"), "{csv}");
    assert!(lines[1].starts_with("3.1.4,180,0,1.000000,0.714286,"), "{csv}");
    assert!(lines[2].starts_with("4.0.0,72,2520,0.027778,0.285714,") && lines[2].ends_with(",yes"), "{csv}");
    assert_eq!(lines.len(), 4, "{csv}");
    let (status, bad) = call(&w, As::Viewer, "GET", "/api/v1/adoption/versions?range=1y", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("range"), "{bad}");

    // 4.0.0, set as split-only, writes 0.02 legacy doses a second: a plan pauses before its first
    // step (the check reads the versions whatever the step).
    let steps = r#"{"percentage": 10, "bake_secs": 3600}"#;
    let (status, view) = call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    // It judges writes since the plan started (the last 30 s at first).
    let view = until_paused(&w, 30).await;
    assert_eq!(view["plan"]["current_step"], -1, "no step was written: {view}");
    let split_only = latest(&view, "split_only_versions");
    assert_eq!(split_only["verdict"], "fail", "{split_only}");
    let detail = split_only["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("versions set as split-only (>= 4.0.0) wrote legacy doses in the last ")
            && detail.contains(" s: 4.0.0 wrote ")
            && !detail.contains("3.1.4"),
        "{split_only}"
    );
    assert!(split_only["value"].as_f64().unwrap() >= 1.0, "{split_only}");
    assert_eq!(split_only["action"], "pause");
}

/// Runs rounds until the plan pauses (at most `secs` seconds); the autopilot's view then.
async fn until_paused(w: &crate::support::control::ControlWorld, secs: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        rollout_dashboard::server::autopilot::driver::tick(&w.state).await.unwrap();
        let view = call(w, As::Viewer, "GET", "/api/v1/autopilot", None).await.1;
        if view["plan"]["state"] == "paused" {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "not paused within {secs} s: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn latest(view: &serde_json::Value, check: &str) -> serde_json::Value {
    let all = view["latest"].as_array().unwrap();
    all.iter().find(|e| e["check"] == check).unwrap_or_else(|| panic!("{check}: {view}")).clone()
}

#[sqlx::test(migrations = false)]
async fn a_failing_legacy_share_names_the_versions_its_legacy_writes_come_from(pool: PgPool) {
    let w = autopilot_world_with(pool, "0", "").await;
    // The first step allows 1 % legacy; the history's share is 0.07 / 1.97 = 3.6 %. The check is
    // conclusive once the step has held 30 s.
    let steps = r#"{"percentage": 10, "bake_secs": 3600, "legacy_ceiling": 0.01}"#;
    let (status, view) = call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let view = until_paused(&w, 90).await;
    let legacy = latest(&view, "legacy_share");
    assert_eq!(legacy["verdict"], "fail", "{legacy}");
    assert!(
        legacy["detail"].as_str().unwrap().ends_with("; 100 % of legacy writes come from 3.1.4 and 4.0.0"),
        "{legacy}"
    );
    // Without the setting, the split-only check passes and says why.
    let split_only = latest(&view, "split_only_versions");
    assert_eq!(split_only["verdict"], "pass", "{split_only}");
    assert!(split_only["detail"].as_str().unwrap().contains("client_versions.split_only is not set"), "{split_only}");
}

#[sqlx::test(migrations = false)]
async fn the_simulators_version_rule_is_the_same_in_sql_and_in_rust(pool: PgPool) {
    use diary_writer::writer::{version_of, VERSION_SQL};
    let ids: Vec<i64> = (1..=5_000).chain([0, -1, -7_919, 10_000_000, 1_000_003, i64::MAX, i64::MIN + 1]).collect();
    let sql = format!("SELECT user_id, {VERSION_SQL} FROM unnest($1::bigint[]) AS t(user_id)");
    let rows: Vec<(i64, String)> = sqlx::query_as(&sql).bind(&ids).fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), ids.len());
    for (id, version) in rows {
        assert_eq!(version, version_of(id), "user {id}");
    }
}
