//! LaunchDarkly as the flag store, through its REST API (the simulator's stand-in).

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use sqlx::PgPool;

use crate::support::control::{call, control_world, proxied_state, proxy_auth, As, ControlWorld};
use crate::support::{diary_schema, PrometheusHarness, SimulatorHarness};

// ---------------------------------------------------------------- LaunchDarkly as the flag store

/// As `control_world`, with the flag in the simulator's LaunchDarkly stand-in (REST API v2).
async fn launchdarkly_world(pool: PgPool, percentage: u32, token: Option<&str>) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("5", 3, None).await;
    sim.launchdarkly.put_boolean_rollout("diary", "insulin_dose_split", "production", percentage);
    let settings = format!(
        "refresh_interval_secs = 1\n[flag]\nbackend = \"launchdarkly\"\n[flag.launchdarkly]\nbase_url = \"{}\"\n\
         project = \"diary\"\nenvironment = \"production\"\n{}",
        sim.url,
        proxy_auth(&[])
    );
    let token = token.map(str::to_string).unwrap_or_else(|| sim.launchdarkly_token.clone());
    let state = proxied_state(&pool, &prom, &sim, &settings, &[("LAUNCHDARKLY_API_TOKEN", &token)]).await;
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

    // The write is conditional in LaunchDarkly itself too: a patch testing an old environment version
    // (someone changed the flag between the dashboard's read and its write) changes nothing.
    let settings = rollout_dashboard::server::config::Settings::from_toml(&format!(
        "[flag]\nbackend = \"launchdarkly\"\n[flag.launchdarkly]\nbase_url = \"{}\"\nproject = \"diary\"\n",
        w.sim.url
    ))
    .unwrap();
    let token = rollout_dashboard::server::config::Secret::new(w.sim.launchdarkly_token.clone());
    let ld = rollout_dashboard::server::flags::launchdarkly_http::LaunchDarkly::new(
        &settings,
        Some(&token),
        Duration::from_secs(5),
    )
    .unwrap();
    let flag = ld.flag().await.unwrap();
    let ops = flag.patch_for("production", rollout_dashboard::server::flags::Percentage::new(90).unwrap()).unwrap();
    let stale = ld.patch(1, ops, "stale").await;
    assert!(
        matches!(stale, Err(rollout_dashboard::server::flags::launchdarkly_http::PatchError::Conflict(_))),
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
    flag["environments"]["production"]["version"] = 4.into();
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

/// Each point of LaunchDarkly's published API the client follows, against the stand-in answering
/// as the spec says: the `LD-API-Version` header on every call; the lock on the environment's own
/// version (an edit of another environment moves the flag's `_version`, and must not refuse this
/// one); a 429 waited out by `X-Ratelimit-Reset` within the source timeout, and said when it
/// cannot be; 405 (approval required) and 400 (a pending scheduled change) as sentences.
#[sqlx::test(migrations = false)]
async fn launchdarkly_calls_follow_the_published_api(pool: PgPool) {
    let w = launchdarkly_world(pool, 5, None).await;
    let ld = &w.sim.launchdarkly;
    let set = |p: u32, v: &str| Some(format!(r#"{{"percentage": {p}, "reason": "step", "expected_version": "{v}"}}"#));
    // Someone edits another environment: `_version` moves, this environment's version does not.
    let mut flag = ld.get("diary", "insulin_dose_split").unwrap();
    flag["_version"] = 9.into();
    ld.put("diary", "insulin_dose_split", flag);
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(10, "1")).await;
    assert_eq!(status, StatusCode::OK, "another environment's edit does not refuse this one: {done}");
    assert_eq!(done["version"], "2");
    let versions = ld.api_versions.lock().unwrap().clone();
    assert!(!versions.is_empty() && versions.iter().all(|v| v == "20240415"), "{versions:?}");

    // Rate limited twice, resetting 300 ms later: waited out within the 5 s source timeout.
    *ld.trouble.lock().unwrap() =
        diary_writer::launchdarkly_api::Trouble { rate_limited: 2, reset_after_ms: 300, ..Default::default() };
    let started = std::time::Instant::now();
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(20, "2")).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(started.elapsed() >= Duration::from_millis(550), "it waited for the resets");
    // Resetting after the source timeout: refused, with when to try again.
    *ld.trouble.lock().unwrap() =
        diary_writer::launchdarkly_api::Trouble { rate_limited: 1, reset_after_ms: 60_000, ..Default::default() };
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(30, "3")).await;
    assert!(status.is_server_error(), "{status} {err}");
    let message = err["error"].as_str().unwrap();
    assert!(message.contains("HTTP 429: rate limited") && message.contains("try again then"), "{message}");

    // Approvals required: 405, said as what to do.
    *ld.trouble.lock().unwrap() =
        diary_writer::launchdarkly_api::Trouble { approval_required: true, ..Default::default() };
    let (_, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(30, "3")).await;
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains("need an approval (HTTP 405") && message.contains("Request the change in LaunchDarkly"),
        "{message}"
    );
    // A pending scheduled change: 400, said as what to do.
    *ld.trouble.lock().unwrap() =
        diary_writer::launchdarkly_api::Trouble { scheduled_clash: true, ..Default::default() };
    let (_, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(30, "3")).await;
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains("clashes with a scheduled change") && message.contains("Review the flag's scheduled changes"),
        "{message}"
    );
    *ld.trouble.lock().unwrap() = Default::default();
    assert_eq!(ld_weights(&w).1, 20_000, "none of the refused changes was written");

    // Prerequisites: shown as they are, not written.
    let mut flag = ld.get("diary", "insulin_dose_split").unwrap();
    flag["environments"]["production"]["prerequisites"] = serde_json::json!([{"key": "new-diary-ui", "variation": 0}]);
    ld.put("diary", "insulin_dose_split", flag);
    let (_, state) = call(&w, As::Operator, "GET", "/api/v1/rollout", None).await;
    assert_eq!(state["writable"], false, "{state}");
    assert!(state["raw"].as_str().unwrap().ends_with("1 prerequisite flag(s)"), "{state}");
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", set(0, "3")).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("not_writable")), "{err}");
}
