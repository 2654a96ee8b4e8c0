//! The autopilot's driver. Every replica runs the loop; a round runs only under the plan's
//! advisory lock (the rollback executor's `with_run_lock`, with the autopilot's own class), so
//! exactly one replica evaluates and acts at a time. A step's flag write is announced first
//! (`pending_step`): a driver killed between the write and its bookkeeping leaves the next one
//! to finish the advance by reading the flag, never by writing it twice.

use chrono::{DateTime, Duration, Utc};

use crate::api::audit::Outcome;
use crate::api::autopilot::{CheckAction, PlanState, Verdict};
use crate::api::rollout::SetPercentage;

use super::super::audit::NewEntry;
use super::super::caller::Caller;
use super::super::error::SourceError;
use super::super::rollback::with_run_lock;
use super::super::state::AppState;
use super::checks;
use super::store::{self, Plan, LOCK_CLASS};

/// The autopilot acting, as the audit trail and the flag store's comments name it.
pub fn autopilot(plan_id: i64) -> Caller {
    Caller::system("autopilot", format!("autopilot-{plan_id}-{}", Utc::now().timestamp_micros()))
}

fn note(action: &str) -> NewEntry {
    NewEntry::new("autopilot", "system", action, "")
}

/// Runs a round every interval, for as long as the process lives.
pub async fn drive_forever(state: AppState) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!("autopilot round: {e}");
        }
        let a = &state.settings.autopilot;
        tokio::time::sleep(std::time::Duration::from_secs(
            a.interval_secs.unwrap_or(state.settings.refresh_interval_secs),
        ))
        .await;
    }
}

/// Runs `f` under plan `id`'s lock (None: another replica holds it).
pub async fn with_plan_lock<T>(
    state: &AppState,
    id: i64,
    f: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<Option<T>, SourceError> {
    with_run_lock(state, LOCK_CLASS, id, f).await
}

/// One round for the active plan, unless another replica is running one.
pub async fn tick(state: &AppState) -> Result<(), SourceError> {
    let Some(id) = store::active_id(&state.state_db).await? else { return Ok(()) };
    with_run_lock(state, LOCK_CLASS, id, round(state, id)).await.map(|_| ())
}

async fn round(state: &AppState, id: i64) -> Result<(), SourceError> {
    let db = &state.state_db;
    let Some(plan) = store::load(db, id).await? else { return Ok(()) };
    if !matches!(plan.state, PlanState::Running | PlanState::Paused) {
        return Ok(());
    }
    let now = Utc::now();
    let percentage = state.flags.read().await.ok().and_then(|r| r.parsed).and_then(Result::ok).map(|p| p.get());
    if let Some(next) = plan.pending_step {
        // A driver died between a step's flag write and its bookkeeping.
        let target = plan.steps.get(next as usize).map(|s| s.percentage);
        if percentage.is_some() && percentage == target {
            let n = note("autopilot.step")
                .values(None, target.map(|p| format!("{p} %")))
                .outcome(Outcome::Done, Some(format!("step {} reached (the flag already read it)", next + 1)));
            store::finish_step(db, id, next, n).await?;
            return Ok(());
        }
        store::drop_pending(db, id).await?;
    }
    if let (Some(expected), Some(now_at)) = (plan.current().map(|s| s.percentage), percentage) {
        if now_at != expected {
            return changed_elsewhere(state, &plan, expected, now_at).await;
        }
    }
    let mut evaluations = checks::evaluate(state, &plan, percentage, now).await;
    newly_failing(state, &plan, &evaluations).await?;
    if plan.state != PlanState::Running {
        return store::record_evaluations(db, id, &evaluations).await;
    }
    let acting = |e: &crate::api::autopilot::Evaluation, action| e.verdict == Verdict::Fail && e.action == action;
    for action in [CheckAction::Kill, CheckAction::Pause] {
        let failed: Vec<String> = evaluations
            .iter_mut()
            .filter(|e| acting(e, action))
            .map(|e| {
                e.acted = true;
                format!("{} failed: {} ({} {}, value {})", e.check, e.detail, "threshold", e.threshold, shown(e.value))
            })
            .collect();
        if failed.is_empty() {
            continue;
        }
        store::record_evaluations(db, id, &evaluations).await?;
        let why = failed.join("; ");
        return match action {
            CheckAction::Kill => kill(state, &plan, &why).await,
            _ => pause(state, &plan, &why).await,
        };
    }
    store::record_evaluations(db, id, &evaluations).await?;
    let clean = evaluations.iter().all(|e| e.verdict == Verdict::Pass || e.action == CheckAction::DryRun);
    let clean_since = store::set_clean(db, id, clean).await?;
    if clean && baked(&plan, clean_since, now) {
        return next_step(state, &plan, "every check passed for the whole bake time").await;
    }
    Ok(())
}

/// Audits `autopilot.check_failing` (an event receivers are told of) for each check that has just
/// started failing and that no pause or kill of this round will tell of: a dry run, or any check
/// of a paused plan. Dismissed checks are not news.
async fn newly_failing(
    state: &AppState,
    plan: &Plan,
    evaluations: &[crate::api::autopilot::Evaluation],
) -> Result<(), SourceError> {
    let db = &state.state_db;
    let before = store::latest_of(&store::evaluations(db, plan.id, 2 * evaluations.len() as i64).await?);
    let acts =
        |e: &crate::api::autopilot::Evaluation| plan.state == PlanState::Running && e.action != CheckAction::DryRun;
    for e in evaluations {
        let was_failing = before.iter().any(|b| b.check == e.check && b.verdict == Verdict::Fail);
        if e.verdict != Verdict::Fail || was_failing || acts(e) || plan.dismissed.contains(&e.check) {
            continue;
        }
        let n = note("autopilot.check_failing")
            .values(None, Some(e.check.clone()))
            .reason(Some(format!(
                "plan #{}: {} (passes when {}, value {})",
                plan.id,
                e.detail,
                e.threshold,
                shown(e.value)
            )))
            .outcome(Outcome::Done, Some(format!("{} check, not acted on", e.action.as_str())));
        super::super::audit::record(db, &n).await?;
    }
    Ok(())
}

fn shown(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "none".into())
}

/// Whether the current step has baked: started, and clean, for its whole bake time (the first
/// step is due as soon as a round is clean).
fn baked(plan: &Plan, clean_since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let Some(step) = plan.current() else { return clean_since.is_some() };
    let bake = Duration::seconds(step.bake_secs as i64);
    match (plan.step_started_at, clean_since) {
        (Some(started), Some(clean)) => now - started >= bake && now - clean >= bake,
        _ => false,
    }
}

/// Moves on: the next step's flag write, or the end of the plan after the last step.
pub(super) async fn next_step(state: &AppState, plan: &Plan, why: &str) -> Result<(), SourceError> {
    let next = plan.current_step + 1;
    let db = &state.state_db;
    let Some(step) = plan.steps.get(next as usize) else {
        let n = note("autopilot.done").outcome(Outcome::Done, Some(why.to_string()));
        store::transition(db, plan.id, plan.state, PlanState::Done, None, n).await?;
        return Ok(());
    };
    if let Some((run, run_state)) = super::super::rollback::store::active_run(db).await? {
        return pause(state, plan, &format!("rollback run #{run} is {run_state}: the rollout waits for it")).await;
    }
    if !store::begin_step(db, plan.id, plan.current_step, next).await? {
        return Ok(());
    }
    let caller = autopilot(plan.id);
    let version = state.flags.read().await?.version.unwrap_or_default();
    let body = SetPercentage {
        percentage: i64::from(step.percentage),
        reason: format!(
            "autopilot plan #{}, step {} of {}: {} ({why})",
            plan.id,
            next + 1,
            plan.steps.len(),
            plan.reason
        ),
        expected_version: version,
        override_guards: plan.guard_override.is_some(),
        override_reason: plan.guard_override.as_ref().map(|g| format!("autopilot plan #{}: {g}", plan.id)),
    };
    match super::super::rollout::set_percentage(state, &caller, body).await {
        Ok(done) => {
            let n = note("autopilot.step")
                .values(Some(done.before), Some(done.after))
                .reason(Some(plan.reason.clone()))
                .outcome(Outcome::Done, Some(format!("step {} of {}: {why}", next + 1, plan.steps.len())));
            store::finish_step(db, plan.id, next, n).await?;
        }
        Err(e) => {
            store::drop_pending(db, plan.id).await?;
            pause(state, plan, &format!("the flag could not be set to step {} ({} %): {e}", next + 1, step.percentage))
                .await?;
        }
    }
    Ok(())
}

async fn pause(state: &AppState, plan: &Plan, why: &str) -> Result<(), SourceError> {
    let n = note("autopilot.pause").outcome(Outcome::Done, Some(why.to_string()));
    store::transition(&state.state_db, plan.id, PlanState::Running, PlanState::Paused, Some(why), n).await?;
    Ok(())
}

/// A check that kills: the flag to 0 % through the kill switch, and the plan ends.
async fn kill(state: &AppState, plan: &Plan, why: &str) -> Result<(), SourceError> {
    let caller = autopilot(plan.id);
    match super::super::rollout::kill(state, &caller, Some(format!("autopilot plan #{}: {why}", plan.id))).await {
        Ok(_) => {
            let n = note("autopilot.kill").outcome(Outcome::Done, Some(why.to_string()));
            store::transition(&state.state_db, plan.id, plan.state, PlanState::Killed, Some(why), n).await?;
        }
        // The plan keeps running, so the next round tries the kill again.
        Err(e) => tracing::error!(plan = plan.id, "the autopilot could not kill the rollout: {e}"),
    }
    Ok(())
}

/// The flag holds something else than the plan's step: someone or something changed it. A kill
/// (0 %) ends the plan; any other change pauses it. Either way, who did it is said.
async fn changed_elsewhere(state: &AppState, plan: &Plan, expected: u8, now_at: u8) -> Result<(), SourceError> {
    let by = super::super::audit::last_flag_change(&state.state_db).await.ok().flatten();
    let who = match by {
        Some((actor, action)) if action == "flag.external_change" => format!("outside the dashboard ({actor})"),
        Some((actor, _)) => format!("by {actor}"),
        None => "by someone the audit trail does not name".into(),
    };
    let why = format!("the flag was changed to {now_at} % instead of the plan's {expected} %, {who}");
    let (to, action) =
        if now_at == 0 { (PlanState::Killed, "autopilot.end") } else { (PlanState::Paused, "autopilot.pause") };
    if to == PlanState::Paused && plan.state == PlanState::Paused {
        return Ok(());
    }
    let n = note(action).outcome(Outcome::Done, Some(why.clone()));
    store::transition(&state.state_db, plan.id, plan.state, to, Some(&why), n).await?;
    Ok(())
}
