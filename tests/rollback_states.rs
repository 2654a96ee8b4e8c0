//! The run, step and plan states are spelled once, in `api::rollback` and `api::autopilot`; the state database's CHECKs
//! and its `active` column must agree with them, or a state the code writes would be refused
//! (or a finished run would still count as the one active run).

use rollout_dashboard::api::rollback::{RunState, StepState};
use rollout_dashboard::server::rollback::store::allowed_states;
use sqlx::PgPool;

#[sqlx::test(migrations = "./migrations")]
async fn the_state_database_allows_exactly_the_states_the_code_names(pool: PgPool) {
    let names = |all: &[&'static str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let runs: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
    let steps: Vec<&str> = StepState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(allowed_states(&pool, "rollback_runs").await.unwrap(), names(&runs));
    assert_eq!(allowed_states(&pool, "rollback_steps").await.unwrap(), names(&steps));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_run_counts_as_active_in_the_database_exactly_when_the_code_says_so(pool: PgPool) {
    for &state in RunState::ALL {
        let mut tx = pool.begin().await.unwrap();
        let active: bool = sqlx::query_scalar(
            "INSERT INTO rollback_runs (actor, reason, environment, state, restore_data, plan)
             VALUES ('ana', 'test', 'e2e', $1, false, '{}'::jsonb) RETURNING active",
        )
        .bind(state.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(active, state.active(), "{state}");
        tx.rollback().await.unwrap();
    }
}

/// The autopilot's plan states, the same way.
#[sqlx::test(migrations = "./migrations")]
async fn the_state_database_allows_exactly_the_plan_states_the_code_names(pool: PgPool) {
    use rollout_dashboard::api::autopilot::PlanState;
    let plans: Vec<String> = PlanState::ALL.iter().map(|s| s.as_str().to_string()).collect();
    assert_eq!(allowed_states(&pool, "autopilot_plans").await.unwrap(), plans);
    for &state in PlanState::ALL {
        let active: bool = sqlx::query_scalar(
            "INSERT INTO autopilot_plans (actor, reason, state, steps) VALUES ('ana', 'test', $1, '[]') RETURNING active",
        )
        .bind(state.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(active, matches!(state, PlanState::Running | PlanState::Paused), "{state}");
        sqlx::query("DELETE FROM autopilot_plans").execute(&pool).await.unwrap();
    }
}
