//! The rollback's executor dying and resuming, approvals, the emergency bypass, and the deploy journal.

use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::support::control::{call, As};
use crate::support::process::DashboardProcess;
use crate::support::rollback::{
    dashboard_env, record_previous, rollback_world, settle, start_body, step, BASE_REV, SPLIT_REV,
};
use crate::support::{dashboard_state, diary_schema, repo};

#[sqlx::test(migrations = false)]
async fn a_run_killed_with_sigkill_after_the_downgrade_resumes_without_repeating_steps(pool: PgPool) {
    // The downgrade command holds for a while after migrating: the kill lands after step 5 acted
    // and before step 6 began.
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
    let env = dashboard_env(&rw, scripts.path());
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
        sqlx::query_as("SELECT name, state FROM rollback_steps WHERE run_id = $1 AND idx <= 6 ORDER BY idx")
            .bind(id)
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert_eq!(
        states.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect::<Vec<_>>(),
        [
            ("stop_writers", "done"),
            ("flag_off", "done"),
            ("archive_split_values", "done"),
            ("fill_dose", "not_chosen"),
            ("schema_downgrade", "running"),
            ("verify_schema", "pending")
        ],
        "killed between steps 5 and 6"
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
    // Resume: step 5 finds the schema already at the target and runs nothing; 1 to 3 are not repeated.
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
    assert_eq!(attempts, [1, 1, 1, 0, 2, 1, 0, 0, 1, 1, 1], "only the interrupted step ran again");
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
    assert_eq!(count("rollback.step step 5 schema_downgrade: running"), 2, "{notes:#?}");
    assert_eq!(count("rollback.step step 5 schema_downgrade: interrupted"), 1, "{notes:#?}");
    assert_eq!(count("rollback.step step 5 schema_downgrade: done"), 1, "{notes:#?}");
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
