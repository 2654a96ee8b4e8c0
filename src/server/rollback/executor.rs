//! The executor: drives a run step by step while holding the run's PostgreSQL advisory lock,
//! records every transition with its audit entry, and after a restart marks a run whose
//! executor died as interrupted at its exact step. Nothing here knows what a step does: it asks
//! the registry and the state machine.

use crate::api::audit::Action;
use crate::api::audit::Outcome;
use crate::api::rollback::{RunState, StepState};

use super::super::error::SourceError;
use super::super::locks::{with_lock, Lock};
use super::super::state::AppState;
use super::machine;
use super::steps::{self, StepFailure};
use super::store::{self, Run, StepUpdate};

pub fn spawn_drive(state: AppState, id: i64) {
    tokio::spawn(async move {
        if let Err(e) = drive(&state, id).await {
            tracing::error!(run = id, "rollback executor: {e}");
        }
    });
}

/// Drives run `id` step by step, if no other executor does.
async fn drive(state: &AppState, id: i64) -> Result<(), SourceError> {
    with_lock(&state.locks, Lock::RollbackRun(id), drive_locked(state, id)).await.map(|_| ())
}

async fn drive_locked(state: &AppState, id: i64) -> Result<(), SourceError> {
    let db = &state.state_db;
    loop {
        let Some(run) = store::load(db, id).await? else { return Ok(()) };
        if run.state != RunState::Running {
            return Ok(());
        }
        let Some(step) = run.current_step() else {
            move_run(db, id, machine::executor::FINISHED, Action::RollbackDone, None, Outcome::Done).await?;
            return Ok(());
        };
        if !run_step(state, &run, step.index, &step.name).await? {
            return Ok(());
        }
    }
}

/// One attempt of one step: running, then done or failed (the run then stops). True when the
/// run may go on.
async fn run_step(state: &AppState, run: &Run, index: u32, name: &str) -> Result<bool, SourceError> {
    let db = &state.state_db;
    let label = format!("step {index} {name}");
    store::set_step(
        db,
        run.id,
        index,
        StepUpdate { output: Some(""), ..StepUpdate::to(StepState::Running) },
        store::executor_note(Action::RollbackStep, Some(format!("{label}: running")), None, Outcome::Done),
    )
    .await?;
    let started = std::time::Instant::now();
    let limit = state.settings.rollback.step_timeout();
    let mut memory = run.memory.clone();
    let result = match steps::find(name) {
        None => Err(StepFailure { output: String::new(), error: format!("unknown step {name:?}") }),
        Some(step) => match tokio::time::timeout(limit, steps::execute(state, run, &mut memory, step)).await {
            Ok(r) => r,
            Err(_) => Err(StepFailure {
                output: String::new(),
                error: format!("timed out after {} s (rollback.step_timeout_secs)", limit.as_secs()),
            }),
        },
    };
    let ended = machine::attempt_ended(result.is_ok());
    match result {
        Ok(output) => {
            store::set_step(
                db,
                run.id,
                index,
                StepUpdate { output: Some(&output), memory: Some(&memory), ..StepUpdate::to(ended) },
                store::executor_note(
                    Action::RollbackStep,
                    Some(format!("{label}: done in {:.1} s", started.elapsed().as_secs_f64())),
                    None,
                    Outcome::Done,
                ),
            )
            .await?;
            Ok(true)
        }
        Err(f) => {
            store::set_step(
                db,
                run.id,
                index,
                StepUpdate {
                    output: Some(&f.output),
                    error: Some(&f.error),
                    memory: Some(&memory),
                    ..StepUpdate::to(ended)
                },
                store::executor_note(
                    Action::RollbackStep,
                    Some(format!("{label}: failed")),
                    Some(f.error.clone()),
                    Outcome::Failed,
                ),
            )
            .await?;
            let detail = format!("{label} failed: {}; retry it, skip it with a reason, or abort the run", f.error);
            move_run(
                db,
                run.id,
                machine::executor::STEP_FAILED,
                Action::RollbackStopped,
                Some(detail),
                Outcome::Failed,
            )
            .await?;
            Ok(false)
        }
    }
}

/// At start: a run that says running while nobody holds its lock lost its executor (the
/// process died). It is marked interrupted at the step it was on; nothing is re-run by itself.
pub async fn recover(state: &AppState) {
    let ids = match store::run_ids_in(&state.state_db, RunState::Running).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!("rollback recovery: {e}");
            return;
        }
    };
    for id in ids {
        // A run whose lock another replica holds is being driven there.
        if let Err(e) = with_lock(&state.locks, Lock::RollbackRun(id), mark_interrupted(state, id)).await {
            tracing::error!(run = id, "rollback recovery: {e}");
        }
    }
}

async fn mark_interrupted(state: &AppState, id: i64) -> Result<(), SourceError> {
    let db = &state.state_db;
    let Some(run) = store::load(db, id).await? else { return Ok(()) };
    if run.state != RunState::Running {
        return Ok(());
    }
    let at = run.current_step().map(|s| (s.index, s.name.clone(), s.state));
    if let Some((idx, name, StepState::Running)) = &at {
        store::set_step(
            db,
            id,
            *idx,
            StepUpdate {
                error: Some("the dashboard stopped while this step was running; it may or may not have acted (retry checks the world first)"),
                ..StepUpdate::to(StepState::Interrupted)
            },
            store::executor_note(Action::RollbackStep, Some(format!("step {idx} {name}: interrupted")), None, Outcome::Failed),
        )
        .await?;
    }
    let detail = match &at {
        Some((i, n, _)) => format!("the dashboard restarted; the run was at step {i} {n}"),
        None => "the dashboard restarted".into(),
    };
    move_run(db, id, machine::executor::LOST, Action::RollbackInterrupted, Some(detail), Outcome::Failed)
        .await
        .map(|_| ())
}

/// The executor moves a run on (`from` → `to`), recording the move as its own. False when the
/// run was no longer in `from`.
async fn move_run(
    db: &sqlx::PgPool,
    id: i64,
    (from, to): (RunState, RunState),
    action: Action,
    detail: Option<String>,
    outcome: Outcome,
) -> Result<bool, SourceError> {
    store::transition(db, id, from, to, None, store::executor_note(action, Some(to.to_string()), detail, outcome)).await
}
