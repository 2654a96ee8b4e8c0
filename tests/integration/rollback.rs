//! The guided rollback, for real: the demo's Alembic project, pg_dump/pg_restore, the simulator's cluster and diary API.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::cluster::Fault;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::control::{call, flag_value, As};
use crate::support::rollback::{record_previous, rollback_world, rows, settle, start_body, step, BASE_REV, SPLIT_REV};

// ---------------------------------------------------------------- guarded rollback, for real

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
    // The journal takes only a revision the dashboard saw the diary at, and never an option for
    // the downgrade's program.
    let unseen = r#"{"revision": "0000deadbeef", "previous_revision": "a1f3c2d4e5b6"}"#.to_string();
    let option = format!(r#"{{"revision": "{SPLIT_REV}", "previous_revision": "--sql"}}"#);
    for body in [unseen, option] {
        let (status, err) = call(w, As::Operator, "POST", "/api/v1/deploys", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
    }
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
        // The fill was not chosen; every other step ran once.
        let (want, attempts) = if s["name"] == "fill_dose" { ("not_chosen", 0) } else { ("done", 1) };
        assert_eq!(
            (s["name"].as_str(), s["state"].as_str(), s["attempts"].as_i64()),
            (s["name"].as_str(), Some(want), Some(attempts)),
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
    // Step 3 archived every split row, verified, before the downgrade dropped the columns.
    let archived = run["memory"]["archived_rows"].as_i64().expect("the archive's row count is remembered");
    assert!(archived >= 25, "the 25 split rows and the writers' until they stopped: {archived}");
    let (kept, long_units): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), sum(insulin_long)::text FROM rollback_archive_rows WHERE run_id = $1 AND insulin_long IS NOT NULL",
    )
    .bind(id)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert!(kept >= 25 && long_units.is_some(), "the long doses are kept: {kept} rows, {long_units:?} u");
    let archive_out = step(&run, "archive_split_values")["output"].as_str().unwrap().to_string();
    assert!(archive_out.contains(&format!("{archived} row(s) archived and verified")), "{archive_out}");
    let downgrade_out = step(&run, "schema_downgrade")["output"].as_str().unwrap().to_string();
    assert!(downgrade_out.contains(&format!("{archived} row(s) archived and verified (run #{id})")), "{downgrade_out}");
    assert!(
        step(&run, "schema_downgrade")["output"]
            .as_str()
            .unwrap()
            .contains("Running downgrade b7e9d1c0f2a3 -> a1f3c2d4e5b6"),
        "{run:#}"
    );
    // pg_restore brought back the backup's 40 rows; step 8 re-inserted, ids kept, every row the
    // restore dropped: the 25 split rows (dose empty without the fill; their split values are in
    // the archive) and what the writers wrote before they stopped. Nothing is lost.
    let count = |sql: &'static str| {
        let pool = w.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM history_records WHERE id <= 40 AND $1 > 0").await, 40);
    assert_eq!(count("SELECT count(*) FROM history_records WHERE id BETWEEN 41 AND 65 AND $1 > 0").await, 25);
    let archived_all = count("SELECT count(*) FROM rollback_archive_whole WHERE run_id = $1").await;
    let missing = count(
        "SELECT count(*) FROM rollback_archive_whole a WHERE run_id = $1
            AND NOT EXISTS (SELECT 1 FROM history_records h WHERE h.id = a.record_id)",
    )
    .await;
    assert_eq!(missing, 0, "every archived row is in the diary after the rollback ({archived_all} archived)");
    let without_dose = count("SELECT count(*) FROM history_records WHERE dose IS NULL AND $1 > 0").await;
    let archived_without_dose =
        count("SELECT count(*) FROM rollback_archive_whole WHERE run_id = $1 AND row -> 'dose' = 'null'").await;
    assert_eq!(without_dose, archived_without_dose, "only the split rows without a dose have none");
    let restore_out = step(&run, "restore_data")["output"].as_str().unwrap().to_string();
    assert!(
        restore_out.contains("rows of the table were archived and verified") && restore_out.contains("read back"),
        "{restore_out}"
    );
    let reinsert_out = step(&run, "reinsert_dropped_rows")["output"].as_str().unwrap().to_string();
    assert!(
        reinsert_out.contains("re-inserted, ids kept")
            && reinsert_out.contains("verified: the re-inserted rows and the archive both hold"),
        "{reinsert_out}"
    );
    // The sequence moved above the re-inserted ids: the smoke check's entry came after them.
    let max_archived = count("SELECT max(record_id) FROM rollback_archive_whole WHERE run_id = $1").await;
    assert!(run["memory"]["smoke_entry_id"].as_i64().unwrap() > max_archived, "{run:#}");
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
    assert_eq!((starts, step_done), (1, 10), "{actions:?}");
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
    // The guard: the downgrade runs only while step 3's archive verifies against the diary. A
    // split row written behind the run's back makes it refuse; so does a missing archive.
    let archived = run["memory"]["archived_rows"].as_i64().unwrap();
    let archive_out = step(&run, "archive_split_values")["output"].as_str().unwrap().to_string();
    assert!(archive_out.contains(&format!("{archived} row(s) archived and verified")), "{archive_out}");
    let retry = format!("/api/v1/rollback/{id}/retry");
    sqlx::query("INSERT INTO history_records (user_id, insulin_short) VALUES (99, 2)").execute(&w.pool).await.unwrap();
    assert_eq!(call(w, As::Operator, "POST", &retry, None).await.0, StatusCode::OK);
    let run = settle(w, id).await;
    let s3 = step(&run, "schema_downgrade");
    assert_eq!(s3["state"], "failed");
    let error = s3["error"].as_str().unwrap();
    assert!(
        error.contains("the diary changed since the archive") && error.contains("the downgrade is refused"),
        "{s3:#}"
    );
    assert!(!s3["output"].as_str().unwrap().contains("Can't locate revision"), "the command did not run: {s3:#}");
    sqlx::query("DELETE FROM history_records WHERE user_id = 99").execute(&w.pool).await.unwrap();
    sqlx::query("DELETE FROM rollback_archives WHERE run_id = $1").bind(id).execute(&w.pool).await.unwrap();
    assert_eq!(call(w, As::Operator, "POST", &retry, None).await.0, StatusCode::OK);
    let run = settle(w, id).await;
    let s3 = step(&run, "schema_downgrade");
    assert_eq!(s3["state"], "failed");
    assert!(s3["error"].as_str().unwrap().contains(&format!("no verified archive of run #{id}")), "{s3:#}");
    let rev: String =
        sqlx::query_scalar("SELECT version_num::text FROM alembic_version").fetch_one(&w.pool).await.unwrap();
    assert_eq!(rev, SPLIT_REV, "nothing was downgraded");

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
    // The abort left the writers stopped: the run offers to scale them back (operators only).
    assert_eq!(w.sim.cluster.snapshot().0.desired_replicas, 0);
    let scale_back = format!("/api/v1/rollback/{id}/scale_back");
    assert_eq!(call(w, As::Viewer, "POST", &scale_back, None).await.0, StatusCode::FORBIDDEN);
    let (status, after) = call(w, As::Operator, "POST", &scale_back, None).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(w.sim.cluster.snapshot().0.desired_replicas, 3, "the remembered count");
    let (entry_before, entry_after): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT value_before, value_after FROM audit_log WHERE action = 'rollback.scale_back' AND outcome = 'done'",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!((entry_before.as_deref(), entry_after.as_deref()), (Some("0"), Some("3")));
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_log WHERE action LIKE 'rollback.%' AND outcome <> 'done' ORDER BY id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    let refused: Vec<&str> = outcomes.iter().filter(|o| o.1 == "refused").map(|o| o.0.as_str()).collect();
    assert_eq!(refused, ["rollback.retry", "rollback.skip", "rollback.retry", "rollback.scale_back"], "{outcomes:?}");
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

/// Issue 31: an installation without the rollback's tools (the image has no `alembic`) is refused
/// at the plan, with why, before any step stops the writers.
#[sqlx::test(migrations = false)]
async fn a_missing_program_is_a_failed_precondition_not_a_failed_step(pool: PgPool) {
    let rw =
        rollback_world(pool, "downgrade = { kind = \"command\", argv = [\"alembic-not-installed\", \"downgrade\"] }")
            .await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let (status, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["ready"], false, "{plan}");
    let pre = plan["preconditions"].as_array().unwrap().iter().find(|p| p["name"] == "programs_present").unwrap();
    assert_eq!(pre["passed"], false);
    assert!(pre["detail"].as_str().unwrap().contains("`alembic-not-installed`"), "{pre}");
    let (status, _) = call(
        w,
        As::Operator,
        "POST",
        "/api/v1/rollback",
        Some(start_body(plan["data_loss_rows"].as_i64().unwrap(), false)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a run does not start");
}
