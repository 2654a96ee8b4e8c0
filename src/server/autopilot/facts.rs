//! What the autopilot offers the other domains: the conditions it holds (a plan paused, a check
//! failing) and the end of its plan when someone kills the rollout. Nothing outside the autopilot
//! reads its store.

use sqlx::PgPool;

use crate::api::autopilot::{PlanState, Verdict};

use super::super::audit::NewEntry;
use super::super::conditions::Condition;
use super::super::config::Severity;
use super::super::error::SourceError;
use super::store;

/// A plan paused; each check failing in a running or paused plan (not dismissed).
pub async fn conditions(db: &PgPool) -> Result<Vec<Condition>, SourceError> {
    let mut out = Vec::new();
    let Some(plan) = store::latest(db).await? else { return Ok(out) };
    if plan.state == PlanState::Paused {
        let why = plan.pause_reason.clone().unwrap_or_default();
        out.push(
            Condition::new("AutopilotPaused", Severity::Warning, format!("Autopilot plan #{} is paused", plan.id), why)
                .label("plan", plan.id),
        );
    }
    if matches!(plan.state, PlanState::Running | PlanState::Paused) {
        let latest = store::latest_of(&store::evaluations(db, plan.id, 200).await?);
        for e in latest.iter().filter(|e| e.verdict == Verdict::Fail && !plan.dismissed.contains(&e.check)) {
            out.push(
                Condition::new(
                    "AutopilotCheckFailing",
                    Severity::Warning,
                    format!("Autopilot check {} is failing (plan #{})", e.check, plan.id),
                    format!("{} (passes when {})", e.detail, e.threshold),
                )
                .label("plan", plan.id)
                .label("check", &e.check),
            );
        }
    }
    Ok(out)
}

/// Ends the active plan in the kill's own bookkeeping (`rollout::kill`): after a kill nothing
/// automatic raises the flag. The plan's id, if one was active.
pub async fn end_for_kill(db: &PgPool, why: &str, entry: NewEntry) -> Result<Option<i64>, SourceError> {
    store::end_for_kill(db, why, entry).await
}
