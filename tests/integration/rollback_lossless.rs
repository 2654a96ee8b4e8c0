//! Issue 33: a rollback that loses no dose. The opt-in fill of `dose` from `insulin_short`, by
//! its rules; and a whole rollback with the fill and the restore, then the roll-forward, against
//! the real Alembic project, pg_restore and PostgreSQL: every archived split value back but the
//! ones the rules keep out, each verdict counted, nothing doubled.

use std::time::Duration;

use axum::http::StatusCode;
use rollout_dashboard::server::rollback::fill::FillRule;
use sqlx::PgPool;

use crate::support::control::{call, As};
use crate::support::process::DashboardProcess;
use crate::support::rollback::{
    alembic, dashboard_env, record_previous, rollback_world, settle, start_body, step, BASE_REV, SPLIT_REV,
};
use crate::support::url_of;

/// Issue 33, item 2: the fill, chosen with its own typed FILL, gives legacy clients the short
/// dose and nothing else: never the long part, never over a dose, never where the parts are
/// equal; rows whose parts differ are filled and named; the archive keeps the dose from before.
#[sqlx::test(migrations = false)]
async fn a_chosen_fill_gives_legacy_clients_the_short_dose_and_nothing_reads_doubled(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    // One row per rule (users 901..904); the world's 25 split rows (ids 41..65) have short 4,
    // long 12: both parts, different.
    sqlx::query(
        "INSERT INTO history_records (user_id, dose, insulin_short, insulin_long) VALUES
           (901, NULL, 3, NULL), (902, NULL, 5, 5), (903, NULL, NULL, 9), (904, 6, 6, 6)",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    let plan_body = Some(r#"{"fill_dose": true}"#.to_string());
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", plan_body).await;
    let fill = plan["steps"].as_array().unwrap().iter().find(|s| s["name"] == "fill_dose").unwrap().clone();
    assert_eq!(fill["chosen"], true, "{fill:#}");
    let lines = fill["actions"].to_string();
    assert!(lines.contains("fill_both_differ: ") && lines.contains("skip_parts_equal: "), "{lines}");
    let loss = plan["data_loss_rows"].as_i64().unwrap();
    let mut body: serde_json::Value = serde_json::from_str(&start_body(loss, false)).unwrap();
    body["fill_dose"] = true.into();
    let (status, err) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the fill needs its typed FILL: {err}");
    body["fill_confirmation"] = "FILL".into();
    let (status, run) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["id"].as_i64().unwrap();
    assert_eq!(run["fill_dose"], true);
    let run = settle(w, id).await;
    assert_eq!(run["state"], "done", "{run:#}");
    let out = step(&run, "fill_dose")["output"].as_str().unwrap().to_string();
    assert!(out.contains("verified: the diary and the archive with the fill both hold"), "{out}");
    assert!(out.contains("flagged (both parts, different; dose shows the short part only): ids 41, 42"), "{out}");
    // The diary after the downgrade: the short dose where the rules allow, nothing else.
    let dose_of = |user: i64| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>("SELECT dose::text FROM history_records WHERE user_id = $1")
                .bind(user)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(dose_of(901).await.as_deref(), Some("3"), "short only: filled");
    assert_eq!(dose_of(902).await, None, "parts equal: not filled (it would read as doubled)");
    assert_eq!(dose_of(903).await, None, "long only: never from insulin_long");
    assert_eq!(dose_of(904).await.as_deref(), Some("6"), "a set dose is never overwritten");
    let filled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history_records WHERE id BETWEEN 41 AND 65 AND dose = 4")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(filled, 25, "both parts, different: the short part");
    // The archive keeps the dose from before the fill, and its header says the fill was made.
    let (archived_empty, fill_counts): (i64, Option<serde_json::Value>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1 AND record_id BETWEEN 41 AND 65 AND dose IS NULL),
                (SELECT fill_counts FROM rollback_archives WHERE run_id = $1 AND filled_at IS NOT NULL)",
    )
    .bind(id)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(archived_empty, 25);
    let fill_counts = fill_counts.expect("the header records the fill");
    // Each rule's count is what the archive (the values from before) says of it.
    for rule in FillRule::ALL.iter().filter(|r| **r != FillRule::NotSplit) {
        let archived: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1 AND {}",
            rule.predicate()
        ))
        .bind(id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
        assert_eq!(fill_counts[rule.name()].as_i64(), Some(archived), "{rule:?}: {fill_counts}");
    }
    assert!(fill_counts["fill_both_differ"].as_i64().unwrap() >= 25, "{fill_counts}");
    assert!(fill_counts["skip_parts_equal"].as_i64().unwrap() >= 1, "{fill_counts}");
}

/// Issue 33, items 3 and 4: with the fill and the restore chosen, the run re-inserts what
/// pg_restore dropped; once the split revision is back, the roll-forward (dry run, operator,
/// typed environment, acknowledged count, audited) puts every archived split value back, empties
/// the filled doses, and skips with a reason what it must not touch; nothing comes back doubled.
#[sqlx::test(migrations = false)]
async fn a_rollback_with_fill_and_restore_then_a_roll_forward_loses_no_split_value(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    sqlx::query(
        "INSERT INTO history_records (user_id, dose, insulin_short, insulin_long) VALUES
           (901, NULL, 3, NULL), (902, NULL, 5, 5), (903, NULL, NULL, 9), (904, 6, 6, 6)",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    let (_, plan) = call(
        w,
        As::Viewer,
        "POST",
        "/api/v1/rollback/plan",
        Some(r#"{"fill_dose": true, "restore_data": true}"#.into()),
    )
    .await;
    let mut body: serde_json::Value =
        serde_json::from_str(&start_body(plan["data_loss_rows"].as_i64().unwrap(), true)).unwrap();
    body["fill_dose"] = true.into();
    body["fill_confirmation"] = "FILL".into();
    let (status, run) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = settle(w, id).await;
    assert_eq!(run["state"], "done", "{run:#}");
    let reinsert = step(&run, "reinsert_dropped_rows")["output"].as_str().unwrap().to_string();
    assert!(reinsert.contains("dose filled by the fill's rule"), "{reinsert}");
    // After the rollback, legacy clients see the short dose on the re-inserted rows.
    let dose4: i64 = sqlx::query_scalar("SELECT count(*) FROM history_records WHERE id BETWEEN 41 AND 65 AND dose = 4")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(dose4, 25, "re-inserted with the fill's dose");

    // The roll-forward needs the split columns back.
    let plan_url = format!("/api/v1/rollback/{id}/roll_forward/plan");
    let apply_url = format!("/api/v1/rollback/{id}/roll_forward/apply");
    let (status, err) = call(w, As::Viewer, "POST", &plan_url, None).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("split_columns_missing")), "{err}");
    alembic(&url_of(&w.pool), &["upgrade", SPLIT_REV]);
    // Since the rollback: one row deleted, one given split values again, one dose changed.
    sqlx::raw_sql(
        "DELETE FROM history_records WHERE user_id = 903;
         UPDATE history_records SET insulin_short = 7 WHERE user_id = 901;
         UPDATE history_records SET dose = 9 WHERE id = 50;",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    let (status, dry) = call(w, As::Viewer, "POST", &plan_url, None).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let of = |view: &serde_json::Value, verdict: &str| -> i64 {
        view["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["verdict"] == verdict)
            .map(|c| c["rows"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(
        (of(&dry, "skipped_row_gone"), of(&dry, "skipped_split_changed"), of(&dry, "skipped_dose_changed")),
        (1, 1, 1),
        "{dry:#}"
    );
    assert!(of(&dry, "skipped_doubled") >= 1, "the doubled row stays legacy: {dry:#}");
    assert!(of(&dry, "restore_undo_fill") >= 24, "{dry:#}");
    let restorable = dry["restorable"].as_i64().unwrap();
    assert_eq!(restorable, of(&dry, "restore") + of(&dry, "restore_undo_fill"));
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM history_records WHERE insulin_long IS NOT NULL")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(untouched, 0, "the dry run wrote nothing");

    // Guards: viewers cannot; a wrong environment or count is refused; nothing written.
    let apply = |env: &str, ack: i64| {
        serde_json::json!({"reason": "split revision redeployed", "confirm_environment": env, "acknowledge_rows": ack})
            .to_string()
    };
    assert_eq!(
        call(w, As::Viewer, "POST", &apply_url, Some(apply("staging-eu", restorable))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(w, As::Operator, "POST", &apply_url, Some(apply("prod", restorable))).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(w, As::Operator, "POST", &apply_url, Some(apply("staging-eu", restorable + 1))).await.0,
        StatusCode::CONFLICT
    );
    let (status, done) = call(w, As::Operator, "POST", &apply_url, Some(apply("staging-eu", restorable))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["dry_run"].as_bool(), done["restorable"].as_i64()), (Some(false), Some(restorable)));
    assert!(done["verified"].as_str().unwrap().contains("checksum"), "{done}");

    // The diary now: every archived split value back where the verdict was restore, the filled
    // dose emptied; the skipped rows as they were; nothing doubled among the archived rows.
    let differing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rollback_archive_rows a JOIN history_records h ON h.id = a.record_id
          WHERE a.run_id = $1 AND (h.dose, h.insulin_short, h.insulin_long) IS DISTINCT FROM (a.dose, a.insulin_short, a.insulin_long)",
    )
    .bind(id)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let skipped_present =
        of(&done, "skipped_split_changed") + of(&done, "skipped_dose_changed") + of(&done, "skipped_doubled");
    assert_eq!(differing, skipped_present, "only the skipped rows differ from the archive");
    let (s41, l41, d41): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT insulin_short::text, insulin_long::text, dose::text FROM history_records WHERE id = 41")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!((s41.as_deref(), l41.as_deref(), d41), (Some("4"), Some("12"), None), "split back, fill undone");
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM history_records h JOIN rollback_archive_rows a ON a.record_id = h.id AND a.run_id = $1
          WHERE h.dose IS NOT NULL AND h.insulin_short = h.dose AND h.insulin_long = h.dose",
    )
    .bind(id)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0, "nothing came back doubled");
    // Again: nothing left to do; audited once with the run.
    let (_, again) = call(w, As::Viewer, "POST", &plan_url, None).await;
    assert_eq!((again["restorable"].as_i64(), of(&again, "already_applied")), (Some(0), restorable), "{again:#}");
    let entries: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT outcome, run_id FROM audit_log WHERE action = 'rollback.reapply' ORDER BY id")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    let outcomes: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(outcomes, ["refused", "refused", "refused", "done"], "{entries:?}");
    assert_eq!(entries.last().unwrap().1, Some(id));
}

/// Crash recovery of the archive: the dashboard is killed (SIGKILL) after it copied the rows
/// into the state database and before the transaction that verifies them committed. Nothing of
/// the archive stays, the downgrade has not run; restarted and retried, the archive is taken
/// afresh, verified, and the run finishes.
#[sqlx::test(migrations = false)]
async fn a_sigkill_while_the_archive_is_written_leaves_no_archive_and_the_retry_takes_it(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let dir = tempfile::tempdir().unwrap();
    let env = dashboard_env(&rw, dir.path());
    // Held by the test: the archive's header cannot be written (its DELETE waits on the lock),
    // so the archive's transaction is caught with its rows copied and not committed.
    let mut blocker = w.pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *blocker).await.unwrap();
    sqlx::query("LOCK TABLE rollback_archives IN SHARE MODE").execute(&mut *blocker).await.unwrap();
    let mut dash = DashboardProcess::start(env.clone());
    dash.ready().await;
    let plan = dash.post("/api/v1/rollback/plan", None).await.1;
    let (status, run) =
        dash.post("/api/v1/rollback", Some(start_body(plan["data_loss_rows"].as_i64().unwrap(), false))).await;
    assert_eq!(status, 200, "{run}");
    let id = run["id"].as_i64().unwrap();
    let mut waiting = false;
    for _ in 0..300 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM rollback_archives%'",
        )
        .fetch_one(&w.pool)
        .await
        .unwrap();
        if n == 1 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waiting, "the archive reached its header with the rows copied");
    dash.kill();
    sqlx::query("ROLLBACK").execute(&mut *blocker).await.unwrap();
    drop(blocker);
    // What the killed transaction wrote is gone: no row, no header; the split columns are there.
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1), (SELECT count(*) FROM rollback_archives WHERE run_id = $1)",
    )
    .bind(id)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(left, (0, 0), "nothing of the archive stays");
    let rev: String =
        sqlx::query_scalar("SELECT version_num::text FROM alembic_version").fetch_one(&w.pool).await.unwrap();
    assert_eq!(rev, SPLIT_REV, "the downgrade did not run");

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
    assert_eq!(step(&run, "archive_split_values")["state"], "interrupted", "{run:#}");
    assert_eq!(dash.post(&format!("/api/v1/rollback/{id}/retry"), None).await.0, 200);
    for _ in 0..600 {
        run = dash.get(&format!("/api/v1/rollback/{id}")).await;
        if run["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run["state"], "done", "{run:#}");
    let archived = run["memory"]["archived_rows"].as_i64().unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1")
        .bind(id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(kept, archived);
    assert!(step(&run, "archive_split_values")["output"]
        .as_str()
        .unwrap()
        .contains(&format!("{archived} row(s) archived and verified")));
}

/// The roll-forward of a run without the fill leaves a dose a person typed since alone (it
/// equals the short part, as a fill's would), and a part re-saved with another scale (4.0 for
/// 4) is newer than the archive: skipped, counted, and it does not block the others.
#[sqlx::test(migrations = false)]
async fn without_the_fill_a_typed_dose_stays_and_a_rescaled_part_does_not_block(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
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
    let id = run["id"].as_i64().unwrap();
    assert_eq!(settle(w, id).await["state"], "done");
    // After the downgrade a person types the short dose into row 41 (a legacy client).
    sqlx::query("UPDATE history_records SET dose = 4 WHERE id = 41").execute(&w.pool).await.unwrap();
    alembic(&url_of(&w.pool), &["upgrade", SPLIT_REV]);
    sqlx::query("UPDATE history_records SET insulin_short = 4.0, insulin_long = 12 WHERE id = 42")
        .execute(&w.pool)
        .await
        .unwrap();
    let (status, dry) = call(w, As::Viewer, "POST", &format!("/api/v1/rollback/{id}/roll_forward/plan"), None).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    let of = |verdict: &str| -> i64 {
        dry["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["verdict"] == verdict)
            .map(|c| c["rows"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(
        (of("restore_undo_fill"), of("skipped_dose_changed"), of("skipped_split_changed")),
        (0, 1, 1),
        "{dry:#}"
    );
    let body = serde_json::json!({"reason": "redeployed", "confirm_environment": "staging-eu", "acknowledge_rows": dry["restorable"]});
    let (status, done) =
        call(w, As::Operator, "POST", &format!("/api/v1/rollback/{id}/roll_forward/apply"), Some(body.to_string()))
            .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (dose41, short42): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT dose::text FROM history_records WHERE id = 41), (SELECT insulin_short::text FROM history_records WHERE id = 42)",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!((dose41.as_deref(), short42.as_deref()), (Some("4"), Some("4.0")), "both left as people wrote them");
}

/// Crash recovery of the roll-forward: the dashboard is killed (SIGKILL) while its one diary
/// transaction waits to write the archived values (the test holds one of the rows). No row gets
/// its split values back, nothing is recorded as re-applied; restarted, the same acknowledged
/// count re-applies every one.
#[sqlx::test(migrations = false)]
async fn a_sigkill_during_the_roll_forward_leaves_no_row_half_restored_and_the_retry_restores_all(pool: PgPool) {
    let rw = rollback_world(pool, "").await;
    let w = &rw.w;
    record_previous(w, BASE_REV).await;
    let (_, plan) = call(w, As::Viewer, "POST", "/api/v1/rollback/plan", None).await;
    let ack = plan["data_loss_rows"].as_i64().unwrap();
    let (status, run) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(start_body(ack, false))).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["id"].as_i64().unwrap();
    assert_eq!(settle(w, id).await["state"], "done");
    alembic(&url_of(&w.pool), &["upgrade", SPLIT_REV]);
    let dir = tempfile::tempdir().unwrap();
    let env = dashboard_env(&rw, dir.path());
    let mut dash = DashboardProcess::start(env.clone());
    dash.ready().await;
    let (status, dry) = dash.post(&format!("/api/v1/rollback/{id}/roll_forward/plan"), None).await;
    assert_eq!(status, 200, "{dry}");
    let restorable = dry["restorable"].as_i64().unwrap();
    assert!(restorable >= 25, "{dry}");
    let apply = serde_json::json!({
        "reason": "split revision redeployed", "confirm_environment": "staging-eu", "acknowledge_rows": restorable,
    })
    .to_string();
    // The test holds the last archived row: the roll-forward's UPDATE waits on it.
    let mut blocker = w.pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *blocker).await.unwrap();
    sqlx::query(
        "SELECT 1 FROM history_records WHERE id = (SELECT max(record_id) FROM rollback_archive_rows WHERE run_id = $1) FOR UPDATE",
    )
    .bind(id)
    .execute(&mut *blocker)
    .await
    .unwrap();
    let answer = dash.post_in_background(&format!("/api/v1/rollback/{id}/roll_forward/apply"), apply.clone());
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE history_records h SET insulin_short%'";
    let mut caught = false;
    for _ in 0..300 {
        if sqlx::query_scalar::<_, i64>(waiting).fetch_one(&w.pool).await.unwrap() == 1 {
            caught = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught, "the roll-forward reached its UPDATE");
    dash.kill();
    assert!(answer.await.unwrap().is_err(), "the killed dashboard never answered");
    sqlx::query("ROLLBACK").execute(&mut *blocker).await.unwrap();
    drop(blocker);
    // The killed session's statement ends and its transaction is rolled back by PostgreSQL.
    let gone = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'UPDATE history_records h SET insulin_short%' AND state <> 'idle'";
    for _ in 0..100 {
        if sqlx::query_scalar::<_, i64>(gone).fetch_one(&w.pool).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let split_back =
        "SELECT count(*) FROM history_records h JOIN rollback_archive_rows a ON a.record_id = h.id AND a.run_id = $1
                       WHERE h.insulin_short IS NOT NULL OR h.insulin_long IS NOT NULL";
    let back: i64 = sqlx::query_scalar(split_back).bind(id).fetch_one(&w.pool).await.unwrap();
    assert_eq!(back, 0, "no archived row got its split values back");
    let reapplied: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT reapplied_at FROM rollback_archives WHERE run_id = $1")
            .bind(id)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert!(reapplied.is_none());
    // Until its roll-forward the archive is the only copy of those doses: however old, kept.
    let archived_rows = "SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1";
    let kept: i64 = sqlx::query_scalar(archived_rows).bind(id).fetch_one(&w.pool).await.unwrap();
    sqlx::query("UPDATE rollback_archives SET archived_at = now() - interval '400 days' WHERE run_id = $1")
        .bind(id)
        .execute(&w.pool)
        .await
        .unwrap();
    rollout_dashboard::server::retention::prune(&w.pool, 90).await.unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>(archived_rows).bind(id).fetch_one(&w.pool).await.unwrap(), kept);

    let dash = DashboardProcess::start(env);
    dash.ready().await;
    let (status, done) = dash.post(&format!("/api/v1/rollback/{id}/roll_forward/apply"), Some(apply)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["restorable"], restorable);
    let back: i64 = sqlx::query_scalar(split_back).bind(id).fetch_one(&w.pool).await.unwrap();
    assert_eq!(back, restorable, "every restorable row is back");
    // retention_days after the roll-forward the rows go; the header stays and says when, and a
    // roll-forward of it is refused with that.
    sqlx::query("UPDATE rollback_archives SET reapplied_at = now() - interval '91 days' WHERE run_id = $1")
        .bind(id)
        .execute(&w.pool)
        .await
        .unwrap();
    rollout_dashboard::server::retention::prune(&w.pool, 90).await.unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>(archived_rows).bind(id).fetch_one(&w.pool).await.unwrap(), 0);
    let (status, refused) = dash.post(&format!("/api/v1/rollback/{id}/roll_forward/plan"), None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("was purged on"), "{refused}");
}
