//! Issue 30's promises of the autopilot against the real things: a kill is final, the medical
//! checks never sleep, a kill that cannot be written is loud, and no plan lowers the flag by
//! surprise. The decisions themselves are proven over generated histories in
//! `autopilot::decide`'s tests; these cover the execution path's conditional writes.

use axum::http::StatusCode;
use rollout_dashboard::server::autopilot::{driver, store};
use sqlx::PgPool;

use crate::support::autopilot::{autopilot_world, rounds_until, start_body, started_at_10_percent};
use crate::support::control::{call, flag_value, As};

/// Issue 30: the medical check never sleeps. With the plan paused by a person, a 3-day-old
/// legacy row is UPDATEd into a doubled dose (what a careless backfill does): the next round
/// kills. Nobody may dismiss the check; after the kill nothing resumes or promotes the plan.
#[sqlx::test(migrations = false)]
async fn a_paused_plan_kills_on_a_doubled_dose_made_by_an_update_and_the_kill_is_final(pool: PgPool) {
    let w = autopilot_world(pool, "0").await;
    sqlx::query(
        "INSERT INTO history_records (id, user_id, created_at, dose) VALUES (900001, 11, now() - interval '3 days', 5)",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    started_at_10_percent(&w).await;
    let (status, _) =
        call(&w, As::Operator, "POST", "/api/v1/autopilot/pause", Some(r#"{"reason": "lunch"}"#.into())).await;
    assert_eq!(status, StatusCode::OK);
    for check in ["doubled_doses", "schema"] {
        let body = format!(r#"{{"reason": "noisy", "check": "{check}"}}"#);
        let (status, err) = call(&w, As::Operator, "POST", "/api/v1/autopilot/dismiss", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(err["error"].as_str().unwrap().contains("cannot be dismissed"), "{err}");
    }
    sqlx::query("UPDATE history_records SET insulin_short = dose, insulin_long = dose WHERE id = 900001")
        .execute(&w.pool)
        .await
        .unwrap();
    rounds_until(&w, 10, |w| flag_value(w) == "0").await;
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/autopilot", None).await;
    assert_eq!(view["plan"]["state"], "killed", "{view}");
    let doubled = view["latest"].as_array().unwrap().iter().find(|e| e["check"] == "doubled_doses").unwrap().clone();
    assert_eq!((doubled["verdict"].as_str(), doubled["acted"].as_bool()), (Some("fail"), Some(true)), "{doubled}");
    assert!(doubled["detail"].as_str().unwrap().contains("#900001"), "{doubled}");
    for action in ["resume", "promote"] {
        let (status, _) =
            call(&w, As::Operator, "POST", &format!("/api/v1/autopilot/{action}"), Some(r#"{"reason": "go"}"#.into()))
                .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action} after a kill");
    }
    assert_eq!(flag_value(&w), "0");
}

/// A person's kill ends the active plan in the same transition, before a round could write its
/// next step; the plan's step write then finds nothing to do.
#[sqlx::test(migrations = false)]
async fn a_persons_kill_ends_the_plan_at_once_and_no_step_follows(pool: PgPool) {
    let w = autopilot_world(pool, "0").await;
    started_at_10_percent(&w).await;
    let id = store::active_id(&w.pool).await.unwrap().unwrap();
    // A round announced its next step just before the kill.
    assert!(store::begin_step(&w.pool, id, 0, 1).await.unwrap());
    let (status, _) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason": "pager"}"#.into())).await;
    assert_eq!(status, StatusCode::OK);
    let plan = store::load(&w.pool, id).await.unwrap().unwrap();
    assert_eq!(plan.state, rollout_dashboard::api::autopilot::PlanState::Killed);
    assert!(plan.pause_reason.unwrap().contains("killed by ana"));
    let late = store::write_step(&w.pool, id, 1, async {
        store::StepWrite::<()>::Done(
            Box::new(rollout_dashboard::server::audit::NewEntry::new(
                "autopilot",
                "system",
                rollout_dashboard::api::audit::Action::AutopilotStep,
                "",
            )),
            None,
        )
    })
    .await
    .unwrap();
    assert!(late.is_none(), "a step write after the kill finds the plan ended and writes nothing");
    for _ in 0..3 {
        driver::tick(&w.state).await.unwrap();
    }
    assert_eq!(flag_value(&w), "0");
    let ends: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'autopilot.end' AND actor = 'ana'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(ends, 1);
}

/// A kill that cannot be written is loud (a critical event to every receiver, an Alertmanager
/// condition), blocks every raise, and is retried until it lands.
#[sqlx::test(migrations = false)]
async fn a_kill_that_cannot_be_written_is_loud_blocks_raises_and_lands_when_it_can(pool: PgPool) {
    use diary_writer::cluster::Fault;
    use rollout_dashboard::server::{kill_requests, notify};
    let w = autopilot_world(pool, "25").await;
    w.sim.set_fault(Fault::Error);
    let (status, err) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason": "pager"}"#.into())).await;
    assert!(status.is_server_error(), "{status} {err}");
    assert_eq!(kill_requests::pending(&w.pool).await.unwrap().len(), 1);
    let failed: (String, String) =
        sqlx::query_as("SELECT action, outcome FROM audit_log WHERE action = 'flag.kill' ORDER BY id DESC LIMIT 1")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(failed, ("flag.kill".to_string(), "failed".to_string()));
    let entries = rollout_dashboard::server::audit::list(&w.pool, 10, Some("flag.kill")).await.unwrap();
    let event = entries.iter().find_map(notify::event::Event::of).expect("the failed kill is an event");
    assert_eq!(event.name, "flag.kill_failed");
    let conditions = notify::alerting::conditions(&w.state).await.unwrap();
    assert!(conditions.iter().any(|c| c.alertname == "RolloutKillFailing"), "{conditions:?}");
    // Kubernetes answers again, but nobody raises the flag while the kill is pending.
    w.sim.set_fault(Fault::None);
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(r#"{{"percentage": 50, "reason": "more", "expected_version": "{version}"}}"#);
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "kill_pending", "{err}");
    rollout_dashboard::server::rollout::retry_kills(&w.state).await.unwrap();
    assert_eq!(flag_value(&w), "0");
    assert!(kill_requests::pending(&w.pool).await.unwrap().is_empty());
    let landed: String =
        sqlx::query_scalar("SELECT actor FROM audit_log WHERE action = 'flag.kill_retry' AND outcome = 'done'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(landed, "kill-retry");
    let conditions = notify::alerting::conditions(&w.state).await.unwrap();
    assert!(!conditions.iter().any(|c| c.alertname == "RolloutKillFailing"), "{conditions:?}");
}

/// A plan never lowers the flag by surprise: a first step below it needs a typed confirmation.
#[sqlx::test(migrations = false)]
async fn a_plan_start_does_not_lower_the_flag_unless_confirmed(pool: PgPool) {
    let w = autopilot_world(pool, "25").await;
    let steps = r#"{"percentage": 10, "bake_secs": 3600}, {"percentage": 50, "bake_secs": 3600}"#;
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/autopilot", start_body(steps)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"].as_str().unwrap().contains("lower from 25 % to 10 %"), "{err}");
    assert_eq!(flag_value(&w), "25");
    let body =
        format!(r#"{{"reason": "start over low", "steps": [{steps}], "confirm_lower": "lower from 25 % to 10 %"}}"#);
    let (status, view) = call(&w, As::Operator, "POST", "/api/v1/autopilot", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    rounds_until(&w, 20, |w| flag_value(w) == "10").await;
    let detail: String = sqlx::query_scalar(
        "SELECT outcome_detail FROM audit_log WHERE action = 'autopilot.start' AND outcome = 'done'",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert!(detail.contains("confirmed: lower from 25 % to 10 %"), "{detail}");
}
