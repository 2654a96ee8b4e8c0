//! The autopilot against the real things: the emulated cluster's flag, the diary in PostgreSQL,
//! Prometheus, and the state database's lock between two replicas.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::server::autopilot::{driver, store};
use sqlx::PgPool;

use crate::support::autopilot::{
    autopilot_world, autopilot_world_with, rounds_until, start_body, started_at_10_percent,
};
use crate::support::control::{audit_rows, call, flag_value, proxy_auth, As, ControlWorld, PROXY_SECRET_VAR, SECRET};
use crate::support::process::DashboardProcess;
use crate::support::{dashboard_state_vars, diary_schema, free_port, url_of, PrometheusHarness, SimulatorHarness};

/// Runs rounds until the active plan is no longer running (a round started elsewhere, e.g. by a
/// start or a promote, may hold the plan's lock for a moment).
async fn rounds_until_stopped(w: &ControlWorld) {
    let id = store::active_id(&w.pool).await.unwrap().unwrap();
    for _ in 0..40 {
        driver::tick(&w.state).await.unwrap();
        if store::load(&w.pool, id).await.unwrap().unwrap().state
            != rollout_dashboard::api::autopilot::PlanState::Running
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn the_autopilot_steps_forward_while_checks_pass_and_kills_on_a_doubled_dose(pool: PgPool) {
    let w = autopilot_world(pool, "0").await;
    let steps = r#"{"percentage": 5, "bake_secs": 5}, {"percentage": 25, "bake_secs": 5}"#;
    // Only operators start a plan; the attempt is refused and recorded otherwise.
    for (who, want) in [(As::Anonymous, StatusCode::UNAUTHORIZED), (As::Viewer, StatusCode::FORBIDDEN)] {
        let (status, _) = call(&w, who, "POST", "/api/v1/autopilot", start_body(steps)).await;
        assert_eq!(status, want, "{who:?}");
    }
    // Steps that do not go up are refused with a sentence.
    let (status, err) = call(
        &w,
        As::Operator,
        "POST",
        "/api/v1/autopilot",
        start_body(r#"{"percentage": 50, "bake_secs": 5}, {"percentage": 25, "bake_secs": 5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("does not go up"), "{err}");
    let (status, view) = call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["plan"]["state"], "running");
    assert_eq!(view["plan"]["schedule"].as_array().unwrap().len(), 2);
    // A second plan is refused while one is active.
    let (status, _) = call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The first step is written as soon as a round is clean; the second after 5 s of clean rounds.
    rounds_until(&w, 20, |w| flag_value(w) == "5").await;
    let t5 = std::time::Instant::now();
    rounds_until(&w, 60, |w| flag_value(w) == "25").await;
    assert!(t5.elapsed() >= Duration::from_secs(4), "the step baked: {:?}", t5.elapsed());
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["current_step"], 1, "{view}");
    let latest = view["latest"].as_array().unwrap();
    let doubled = latest.iter().find(|e| e["check"] == "doubled_doses").unwrap();
    assert_eq!((doubled["verdict"].as_str(), doubled["value"].as_f64()), (Some("pass"), Some(0.0)), "{doubled}");
    assert!(doubled["query"].as_str().unwrap().contains("insulin_short = dose"), "the SQL as run: {doubled}");
    let schema = latest.iter().find(|e| e["check"] == "schema").unwrap();
    assert_eq!(schema["verdict"], "pass");
    // The step advanced on real verdicts: users counted from the writers' rows, a real share.
    let history = view["history"].as_array().unwrap();
    let ratio = history.iter().find(|e| e["check"] == "sample_ratio" && e["verdict"] == "pass" && e["step"] == 0);
    let ratio = ratio.unwrap_or_else(|| panic!("the sample ratio passed on users at step 1: {view}"));
    assert!(ratio["sample"].as_i64().unwrap() >= 100, "{ratio}");
    assert_eq!(ratio["action"], "pause", "not a dry run: {ratio}");
    let legacy = history.iter().find(|e| e["check"] == "legacy_share" && e["verdict"] == "pass" && e["step"] == 0);
    assert!(legacy.is_some(), "the legacy share passed at step 1: {view}");
    // The flag writes went through the person's path, as the autopilot.
    let rows = audit_rows(&w).await;
    let sets: Vec<&(String, String, String, Option<String>)> =
        rows.iter().filter(|r| r.1 == "flag.set" && r.2 == "done").collect();
    assert_eq!(sets.len(), 2, "{rows:?}");
    assert!(sets.iter().all(|r| r.0 == "autopilot"), "{rows:?}");
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM audit_log WHERE action = 'flag.set' ORDER BY id DESC LIMIT 1")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert!(reason.contains("step 2 of 2") && reason.contains("roll out split doses"), "{reason}");

    // A client copies dose into both parts: the next round kills the rollout.
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (7, now(), 6, 6, 6)")
        .execute(&w.pool)
        .await
        .unwrap();
    rounds_until(&w, 10, |w| flag_value(w) == "0").await;
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["state"], "killed", "{view}");
    assert!(view["plan"]["pause_reason"].as_str().unwrap().contains("doubled_doses failed"), "{view}");
    let doubled = view["latest"].as_array().unwrap().iter().find(|e| e["check"] == "doubled_doses").unwrap().clone();
    assert_eq!(
        (doubled["verdict"].as_str(), doubled["value"].as_f64(), doubled["acted"].as_bool()),
        (Some("fail"), Some(1.0), Some(true))
    );
    let kill: (String, String) =
        sqlx::query_as("SELECT actor, role FROM audit_log WHERE action = 'flag.kill' AND outcome = 'done'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(kill, ("autopilot".to_string(), "system".to_string()));
}

#[sqlx::test(migrations = false)]
async fn a_flag_change_elsewhere_pauses_the_plan_and_people_stay_in_charge(pool: PgPool) {
    let w = autopilot_world(pool, "0").await;
    started_at_10_percent(&w).await;
    // A viewer may not pause; promote needs a reason.
    let (status, _) = call(&w, As::Viewer, "POST", "/api/v1/autopilot/pause", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&w, As::Operator, "POST", "/api/v1/autopilot/promote", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Promote skips the rest of an hour's bake time.
    let (status, view) =
        call(&w, As::Operator, "POST", "/api/v1/autopilot/promote", Some(r#"{"reason": "checked by hand"}"#.into()))
            .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(flag_value(&w), "50");
    // Someone moves the flag on /rollout: the autopilot pauses and says who.
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(r#"{{"percentage": 30, "reason": "hold", "expected_version": "{version}"}}"#);
    let (status, _) = call(&w, As::OtherOperator, "POST", "/api/v1/rollout", Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    rounds_until_stopped(&w).await;
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["state"], "paused", "{view}");
    let why = view["plan"]["pause_reason"].as_str().unwrap();
    assert!(why.contains("30 %") && why.contains("by cy"), "{why}");
    // Resuming while the flag is not where the plan left it is refused with what to do.
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/autopilot/resume", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err["error"].as_str().unwrap().contains("set it back"), "{err}");
    let (status, view) =
        call(&w, As::Operator, "POST", "/api/v1/autopilot/abort", Some(r#"{"reason": "done by hand"}"#.into())).await;
    assert_eq!((status, view["plan"]["state"].as_str()), (StatusCode::OK, Some("aborted")));
    assert_eq!(flag_value(&w), "30", "an abort leaves the flag where it is");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'autopilot.%' AND outcome = 'done' ORDER BY id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert_eq!(actions, ["autopilot.start", "autopilot.step", "autopilot.step", "autopilot.pause", "autopilot.abort"]);
    // The overview's charts mark the plan's start, its pause and its abort (beside the flag
    // changes the flag's observer records, which this world does not run).
    let overview = rollout_dashboard::server::overview::overview(&w.state, "1h", "24h", false).await.unwrap();
    let usage = overview.charts.iter().find(|c| c.id == "usage").unwrap();
    let svg = usage.svg.as_deref().unwrap_or_else(|| panic!("no usage chart: {:?}", usage.error));
    assert_eq!(svg.matches(r#"class="marker autopilot-event""#).count(), 3, "{svg}");
    assert!(svg.contains("autopilot pause, by autopilot"), "{svg}");
    assert!(svg.contains("autopilot abort, by ana"), "{svg}");
}

#[sqlx::test(migrations = false)]
async fn one_replica_drives_at_a_time_and_a_half_done_step_is_finished_without_a_second_write(pool: PgPool) {
    let w = autopilot_world(pool.clone(), "0").await;
    started_at_10_percent(&w).await;
    let id = store::active_id(&w.pool).await.unwrap().unwrap();
    // A second replica on the same state database.
    let other = dashboard_state_vars(&pool, Some(url_of(&pool)), None, Some(&w.sim.kubeconfig), None, &[]).await;
    let (first, second) = tokio::join!(
        driver::with_plan_lock(&w.state, id, async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok(())
        }),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            driver::with_plan_lock(&other, id, async { Ok(()) }).await
        }
    );
    assert_eq!(first.unwrap(), Some(()), "the first replica ran its round");
    assert_eq!(second.unwrap(), None, "the second found the plan's lock taken and did nothing");
    // A driver died after writing step 2's flag and before its bookkeeping.
    sqlx::query("UPDATE autopilot_plans SET pending_step = 1 WHERE id = $1").bind(id).execute(&w.pool).await.unwrap();
    w.sim.cluster.write_configmap(None, [("insulin_dose_split".to_string(), "50".to_string())].into()).unwrap();
    let writes_before = audit_rows(&w).await.iter().filter(|r| r.1 == "flag.set").count();
    let mut plan = store::load(&w.pool, id).await.unwrap().unwrap();
    for _ in 0..30 {
        driver::tick(&other).await.unwrap();
        plan = store::load(&w.pool, id).await.unwrap().unwrap();
        if plan.pending_step.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!((plan.current_step, plan.pending_step), (1, None), "the next driver finished the step");
    assert_eq!(
        audit_rows(&w).await.iter().filter(|r| r.1 == "flag.set").count(),
        writes_before,
        "without writing the flag again"
    );
    assert_eq!(flag_value(&w), "50");
}

/// A custom PromQL check in the Argo style: one failed measurement tolerated, the second pauses.
#[sqlx::test(migrations = false)]
async fn a_custom_promql_check_tolerates_its_failure_limit_then_acts(pool: PgPool) {
    let custom = "[[autopilot.custom]]\nname = \"legacy_rate\"\nquery = \"sum(rate(legacy_dose_used_total[5m]))\"\n\
                  condition = \"result < 0.01\"\nfailure_limit = 1\naction = \"pause\"\n";
    let w = autopilot_world_with(pool, "0", custom).await;
    let (status, _) =
        call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(r#"{"percentage": 10, "bake_secs": 3600}"#))
            .await;
    assert_eq!(status, StatusCode::OK);
    rounds_until_stopped(&w).await;
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["state"], "paused", "{view}");
    assert!(view["plan"]["pause_reason"].as_str().unwrap().contains("legacy_rate failed"), "{view}");
    let verdicts: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["check"] == "legacy_rate")
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["inconclusive", "fail"], "the first failure is tolerated, the second acts");
    let latest = view["latest"].as_array().unwrap().iter().find(|e| e["check"] == "legacy_rate").unwrap().clone();
    assert_eq!(latest["query"], "sum(rate(legacy_dose_used_total[5m]))");
    assert!((latest["value"].as_f64().unwrap() - 0.07).abs() < 1e-6, "{latest}");
    assert_eq!(flag_value(&w), "0", "paused before the first step: the flag never moved");
    // The operator dismisses the failing check for this step (a reason is required, once).
    let dismiss = |body: &str| call(&w, As::Operator, "POST", "/api/v1/autopilot/dismiss", Some(body.to_string()));
    assert_eq!(dismiss(r#"{"check": "legacy_rate"}"#).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(dismiss(r#"{"check": "no_such_check", "reason": "r"}"#).await.0, StatusCode::BAD_REQUEST);
    let (status, view) = dismiss(r#"{"check": "legacy_rate", "reason": "the legacy rate is known"}"#).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["plan"]["dismissed"], serde_json::json!(["legacy_rate"]));
    assert_eq!(dismiss(r#"{"check": "legacy_rate", "reason": "again"}"#).await.0, StatusCode::CONFLICT);
}

/// Two dashboard processes on one state database drive one plan; the one that may be driving is
/// killed with SIGKILL mid-plan, and the other carries the plan on. Every step's flag write
/// happens exactly once.
#[sqlx::test(migrations = false)]
async fn two_dashboard_processes_drive_one_plan_and_survive_a_sigkill(pool: PgPool) {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("0", 3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    // What is proven here is one plan carried across replicas and a SIGKILL, each step written
    // once; this world has no writers, so no users for the sample ratio to count: a dry run.
    std::fs::write(
        &settings,
        format!(
            "refresh_interval_secs = 1\n{}[autopilot]\ninterval_secs = 1\nlegacy_grace_secs = 0\n\
             [autopilot.actions]\nsample_ratio = \"dry_run\"\n",
            proxy_auth(&[])
        ),
    )
    .unwrap();
    let env = |port: u16| -> Vec<(String, String)> {
        [
            ("STATE_DATABASE_URL", url_of(&pool)),
            ("DATABASE_URL", url_of(&pool)),
            ("PROMETHEUS_URL", prom.url.clone()),
            ("KUBECONFIG", sim.kubeconfig.display().to_string()),
            ("ROLLOUT_CONFIG", settings.display().to_string()),
            (PROXY_SECRET_VAR, SECRET.to_string()),
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let mut a = DashboardProcess::start(env(free_port()));
    let b = DashboardProcess::start(env(free_port()));
    a.ready().await;
    b.ready().await;
    let steps = r#"{"percentage": 10, "bake_secs": 5}, {"percentage": 20, "bake_secs": 5}, {"percentage": 30, "bake_secs": 3600}"#;
    let (status, view) =
        a.post("/api/v1/autopilot", Some(format!(r#"{{"reason": "two replicas", "steps": [{steps}]}}"#))).await;
    assert_eq!(status, 200, "{view}");
    let flag = || sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone();
    let wait_for = |want: &'static str, secs: u64| {
        let flag = &flag;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(secs);
            while flag() != want {
                assert!(std::time::Instant::now() < deadline, "the flag did not reach {want} (it holds {})", flag());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for("10", 30).await;
    // The replica that started the plan dies mid-plan, without a word.
    a.kill();
    wait_for("20", 75).await;
    wait_for("30", 75).await;
    // The flag is written (and read back) before the step is recorded: the record follows it.
    let mut view = b.get("/api/v1/autopilot").await;
    for _ in 0..100 {
        if view["plan"]["current_step"].as_i64() == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        view = b.get("/api/v1/autopilot").await;
    }
    assert_eq!(
        (view["plan"]["state"].as_str(), view["plan"]["current_step"].as_i64()),
        (Some("running"), Some(2)),
        "{view}"
    );
    let writes: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT actor, value_after FROM audit_log WHERE action = 'flag.set' AND outcome = 'done' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let want: Vec<(String, Option<String>)> =
        ["10", "20", "30"].iter().map(|v| ("autopilot".to_string(), Some(v.to_string()))).collect();
    assert_eq!(writes, want, "each step written exactly once, by the autopilot");
}

/// A dry-run check that starts failing is told once (`autopilot.check_failing`, an event the
/// receivers get), not every round; while it fails, the Alertmanager receiver holds
/// `AutopilotCheckFailing` for it.
#[sqlx::test(migrations = false)]
async fn a_dry_run_check_that_starts_failing_is_an_event_once_and_an_alert_while_it_fails(pool: PgPool) {
    let custom = "[[autopilot.custom]]\nname = \"legacy_rate\"\nquery = \"sum(rate(legacy_dose_used_total[5m]))\"\n\
                  condition = \"result < 0.01\"\naction = \"dry_run\"\n";
    let w = autopilot_world_with(pool, "0", custom).await;
    started_at_10_percent(&w).await;
    for _ in 0..4 {
        driver::tick(&w.state).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failing: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT actor, value_after, reason FROM audit_log WHERE action = 'autopilot.check_failing' ORDER BY id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    assert_eq!(failing.len(), 1, "once, on the change to failing: {failing:?}");
    assert_eq!((failing[0].0.as_str(), failing[0].1.as_deref()), ("autopilot", Some("legacy_rate")));
    assert!(failing[0].2.as_deref().unwrap().contains("passes when"), "{failing:?}");
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["state"], "running", "a dry run never holds the plan: {view}");
    let alerts = rollout_dashboard::server::notify::alerting::conditions(&w.state).await.unwrap();
    let names: Vec<(&str, Option<&String>)> = alerts.iter().map(|c| (c.alertname, c.labels.get("check"))).collect();
    assert_eq!(names, [("AutopilotCheckFailing", Some(&"legacy_rate".to_string()))]);
}
