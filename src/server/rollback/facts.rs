//! What the rollback offers the other domains: whether a run is active (the rollout's guard and
//! the autopilot hold while one is) and the conditions it holds (a run stopped, interrupted or
//! waiting for approval). Nothing outside the rollback reads its store.

use sqlx::PgPool;

use crate::api::rollback::RunState;

use super::super::conditions::Condition;
use super::super::config::Severity;
use super::super::error::SourceError;
use super::store;

/// The run that is not finished, if any, and its state.
pub async fn active_run(db: &PgPool) -> Result<Option<(i64, RunState)>, SourceError> {
    store::active_run(db).await
}

/// When the newest passing rehearsal on a fresh enough backup ended (the autopilot's
/// `require_rehearsal` reads it).
pub async fn rehearsal_passed_at(
    db: &PgPool,
    backup_max_age_hours: u64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, SourceError> {
    super::rehearsal::store::last_passed_at(db, backup_max_age_hours).await
}

/// A run stopped at a failed step, interrupted, or waiting for a second operator.
pub async fn conditions(db: &PgPool) -> Result<Vec<Condition>, SourceError> {
    let Some((id, run)) = active_run(db).await? else { return Ok(Vec::new()) };
    let stopped = |what: &str| format!("Rollback run #{id} {what}");
    let c = match run {
        RunState::Stopped => Some(("RollbackStopped", stopped("stopped at a failed step"), "retry, skip or abort it")),
        RunState::Interrupted => {
            Some(("RollbackStopped", stopped("was interrupted"), "the dashboard stopped mid-step; resume or abort it"))
        }
        RunState::AwaitingApproval => {
            Some(("RollbackNeedsApproval", stopped("needs a second operator"), "another operator must approve it"))
        }
        _ => None,
    };
    Ok(c.into_iter()
        .map(|(name, summary, what)| {
            Condition::new(name, Severity::Critical, summary, format!("On /rollback: {what}.")).label("run", id)
        })
        .collect())
}
