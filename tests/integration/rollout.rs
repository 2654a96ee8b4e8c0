//! Writing the flag and the audit trail; rollout control through the REST door.

use std::time::Duration;

use axum::http::StatusCode;
use rollout_dashboard::server::cluster::Cluster;
use rollout_dashboard::server::config::KubeAccess;
use sqlx::PgPool;

use crate::support::control::{audit_rows, call, control_world, flag_value, As};
use crate::support::{dashboard_state, SimulatorHarness};

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
        action: rollout_dashboard::api::audit::Action::FlagSet,
        target: "diabetes/feature-flags/insulin_dose_split".into(),
        value_before: Some("5".into()),
        value_after: Some("25".into()),
        reason: Some("step two".into()),
        outcome: Outcome::Done,
        outcome_detail: None,
        request_id: Some("req-1".into()),
        run_id: None,
        plan_id: Some(3),
    };
    let id = record(&pool, &entry).await.unwrap();
    for sql in ["UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let e = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let all = list(&pool, 10, None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].reason.as_deref(), all[0].outcome), (id, Some("step two"), Outcome::Done));
    assert_eq!((all[0].run_id, all[0].plan_id), (None, Some(3)), "the typed references come back as written");
    assert_eq!(list(&pool, 10, Some("rollback.start")).await.unwrap().len(), 0);
}

#[sqlx::test(migrations = false)]
async fn retention_prunes_what_only_grows_and_keeps_the_audit_trail(pool: PgPool) {
    use rollout_dashboard::server::retention::prune;
    let _state = dashboard_state(&pool, None, None, None).await; // runs the migrations
    let old = "now() - interval '100 days'";
    let recent = "now() - interval '10 days'";
    for at in [old, recent] {
        for sql in [
            format!("INSERT INTO flag_observations (observed_at, flag_key, source) VALUES ({at}, 'k', 'kubernetes')"),
            format!("INSERT INTO notify_attempts (at, receiver, event, severity, attempt, ok, millis) VALUES ({at}, 'r', 'flag.kill', 'critical', 1, true, 5)"),
            format!("INSERT INTO kill_requests (requested_at, actor, landed_at) VALUES ({at}, 'ana', {at})"),
            format!("INSERT INTO audit_log (at, actor, role, action, target, outcome) VALUES ({at}, 'ana', 'operator', 'flag.kill', 't', 'done')"),
        ] {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
    }
    // A kill request that has not landed is kept, however old: it is the red line on the pages.
    sqlx::query(&format!("INSERT INTO kill_requests (requested_at, actor) VALUES ({old}, 'bo')"))
        .execute(&pool)
        .await
        .unwrap();
    // Evaluations of an ended plan go; those of an active plan stay, however old.
    for state in ["done", "running"] {
        let plan: i64 = sqlx::query_scalar(
            "INSERT INTO autopilot_plans (actor, reason, state, steps) VALUES ('ana', 'r', $1, '[]') RETURNING id",
        )
        .bind(state)
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO autopilot_evaluations (plan_id, at, step, check_name, verdict, threshold, query, detail, action)
             VALUES ($1, {old}, 0, 'doubled_doses', 'pass', '= 0', 'q', 'd', 'kill')"
        ))
        .bind(plan)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO sessions (token_sha256, username, role, expires_at) VALUES ('a', 'ana', 'operator', now() - interval '1 minute'), ('b', 'bo', 'viewer', now() + interval '1 hour')")
        .execute(&pool)
        .await
        .unwrap();

    let deleted = prune(&pool, 90).await.unwrap();
    assert_eq!(
        deleted,
        [
            ("sessions", 1),
            ("autopilot_evaluations", 1),
            ("notify_attempts", 1),
            ("kill_requests", 1),
            // No rollback archive was re-applied: none is purged (tests/integration/rollback_lossless.rs).
            ("rollback_archives", 0),
            ("rollback_archive_rows", 0),
            ("rollback_archive_whole", 0)
        ]
    );
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}")).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("audit_log").await, 2, "the audit trail is kept whole");
    // Flag observations (a row per change; the rollout's start is read from them) are kept.
    assert_eq!((count("flag_observations").await, count("notify_attempts").await), (2, 1));
    assert_eq!(
        (count("kill_requests").await, count("autopilot_evaluations").await, count("sessions").await),
        (2, 1, 1)
    );
    assert_eq!(prune(&pool, 90).await.unwrap().iter().map(|(_, n)| n).sum::<u64>(), 0, "a second run finds nothing");
}

// ---------------------------------------------------------------- rollout control

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
    // Every attempt by somebody is in the audit trail: the viewer's two refusals, then two
    // changes. The anonymous refusals are counted in /metrics instead (anyone could fill the
    // trail with them).
    let rows = audit_rows(&w).await;
    let outcomes: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect();
    assert_eq!(outcomes, [("bo", "refused"), ("bo", "refused"), ("ana", "done"), ("ana", "done")]);
    assert_eq!(rows[2].3.as_deref(), Some("10"));
    assert_eq!((rows[3].1.as_str(), rows[3].3.as_deref()), ("flag.kill", Some("0")));
    let metrics = w.state.services.metrics.render();
    for action in ["flag.set", "flag.kill"] {
        let line = format!("rollout_dashboard_anonymous_refusals_total{{action=\"{action}\"}} 1");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
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

/// Issue 31: a bare kill (no body, as on-call types it in a hurry: `curl -X POST …/kill`) kills.
#[sqlx::test(migrations = false)]
async fn a_bare_kill_kills(pool: PgPool) {
    let w = control_world(pool, "30").await;
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout/kill", None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(flag_value(&w), "0");
}
