//! The autopilot's driver: it gathers what a round sees, asks `decide` what to do, and does
//! it; it decides nothing itself. Every replica runs the loop; a round runs only under the plan's
//! advisory lock (`locks::Lock::AutopilotPlan`), so
//! exactly one replica evaluates and acts at a time. A step's flag write is announced first
//! (`pending_step`): a driver killed between the write and its bookkeeping leaves the next one
//! to finish the advance by reading the flag, never by writing it twice.

use crate::api::audit::Action;
use chrono::{DateTime, Utc};

use crate::api::audit::Outcome;
use crate::api::autopilot::{Evaluation, PlanState, Verdict};
use crate::api::rollout::SetPercentage;

use super::super::audit::NewEntry;
use super::super::caller::Caller;
use super::super::error::SourceError;
use super::super::locks::{with_lock, Lock};
use super::super::state::AppState;
use super::checks;
use super::decide::{decide, Budgets, CheckSeen, Decision, FlagSeen, Observation, PauseKind};
use super::store::{self, Plan};

/// The autopilot acting, as the audit trail and the flag store's comments name it.
pub fn autopilot(plan_id: i64) -> Caller {
    Caller::system("autopilot", format!("autopilot-{plan_id}-{}", Utc::now().timestamp_micros()))
}

fn note(action: Action) -> NewEntry {
    NewEntry::new("autopilot", "system", action, "")
}

/// Runs `f` under plan `id`'s lock (None: another replica holds it).
pub async fn with_plan_lock<T>(
    state: &AppState,
    id: i64,
    f: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<Option<T>, SourceError> {
    with_lock(&state.locks, Lock::AutopilotPlan(id), f).await
}

/// One round for the active plan, unless another replica is running one.
pub async fn tick(state: &AppState) -> Result<(), SourceError> {
    let Some(id) = store::active_id(&state.state_db).await? else { return Ok(()) };
    with_lock(&state.locks, Lock::AutopilotPlan(id), round(state, id, None)).await.map(|_| ())
}

/// A person's Promote: a round that may skip the rest of the bake time, under the plan's lock.
/// `Err(sentence)` when it is refused (or a round is under way).
pub async fn promote(state: &AppState, id: i64, why: String) -> Result<Result<(), String>, SourceError> {
    Ok(match with_lock(&state.locks, Lock::AutopilotPlan(id), round(state, id, Some(why))).await? {
        None => Err("an evaluation round is under way; try again in a moment".into()),
        Some(Decision::Step { .. } | Decision::Done { .. }) => Ok(()),
        Some(Decision::Refuse { why }) => Err(why),
        Some(Decision::Kill { why }) => Err(format!("nothing was promoted: the round killed the rollout ({why})")),
        Some(Decision::EndKilled { why }) => Err(format!("nothing was promoted: the plan ended ({why})")),
        Some(Decision::Pause { why, .. }) => Err(format!("nothing was promoted: the plan paused ({why})")),
        Some(Decision::FinishStep { .. }) => Err("a step's write was being finished; look again and promote".into()),
        Some(Decision::Hold { why, .. }) => Err(format!("nothing was promoted: {why}")),
        Some(Decision::Idle) => Err("the plan is not active".into()),
    })
}

/// Reads the flag, then evaluates every check (so that a step is written only on the version
/// read before the checks), decides, records, and executes the decision.
async fn round(state: &AppState, id: i64, promote: Option<String>) -> Result<Decision, SourceError> {
    let db = &state.state_db;
    let Some(plan) = store::load(db, id).await? else { return Ok(Decision::Idle) };
    if !matches!(plan.state, PlanState::Running | PlanState::Paused) {
        return Ok(Decision::Idle);
    }
    let now = store::now(db).await?;
    let flag = match state.flags.read().await {
        Ok(r) => FlagSeen::Read {
            percentage: r.parsed.and_then(Result::ok).map(|p| p.get()),
            version: r.version.unwrap_or_default(),
        },
        Err(e) => FlagSeen::Unreadable(e.to_string()),
    };
    let percentage = match &flag {
        FlagSeen::Read { percentage, .. } => *percentage,
        FlagSeen::Unreadable(_) => None,
    };
    let mut evaluations = checks::evaluate(state, &plan, percentage, now).await;
    let streaks = store::inconclusive_streaks(db, id, plan.current_step).await?;
    let rollback = super::super::rollback::facts::active_run(db)
        .await?
        .map(|(run, run_state)| format!("rollback run #{run} is {run_state}"));
    let kill_pending = !super::super::kill_requests::pending(db).await?.is_empty();
    let a = &state.settings.autopilot;
    // Read only when demanded; unreadable reads as none passed (the plan holds, never steps).
    let rehearsed_at = match a.require_rehearsal {
        Some(_) => {
            let max_age = state.settings.rollback.backup_max_age_hours;
            super::super::rollback::facts::rehearsal_passed_at(db, max_age).await.unwrap_or_else(|e| {
                tracing::warn!("the rehearsals cannot be read ({e}): the plan holds below the demanded percentage");
                None
            })
        }
        None => None,
    };
    let obs = Observation {
        now,
        flag,
        checks: evaluations.iter().map(|e| seen(e, &streaks, now)).collect(),
        rollback,
        kill_pending,
        dismissed: plan.dismissed.clone(),
        promote,
        rehearsed_at,
    };
    let budgets = Budgets {
        inconclusive_secs: a.inconclusive_secs as i64,
        blind_rounds: a.blind_rounds,
        watch_secs: a.watch_secs as i64,
        rehearsal: a.require_rehearsal.map(|r| super::decide::RehearsalGate {
            above_percentage: r.above_percentage,
            max_age_secs: r.max_age_hours as i64 * 3600,
        }),
    };
    let decided = decide(&plan.facts(), &obs, budgets);
    for e in evaluations.iter_mut() {
        e.acted = decided.acted.contains(&e.check);
    }
    // A kill goes first: no bookkeeping error may stand between a failing medical check and it.
    let killing = matches!(decided.decision, Decision::Kill { .. });
    if killing {
        execute(state, &plan, decided.decision.clone()).await?;
    }
    newly_failing(state, &plan, &evaluations, &decided).await?;
    store::record_evaluations(db, id, &evaluations).await?;
    if decided.drop_pending {
        store::drop_pending(db, id).await?;
    }
    if !killing {
        execute(state, &plan, decided.decision.clone()).await?;
    }
    Ok(decided.decision)
}

/// What `decide` reads of one evaluation: its verdict, and its unbroken inconclusive run.
fn seen(e: &Evaluation, streaks: &[(String, DateTime<Utc>, i64)], now: DateTime<Utc>) -> CheckSeen {
    let before = streaks.iter().find(|s| s.0 == e.check);
    let (since, rounds) = match (e.verdict, before) {
        (Verdict::Inconclusive, Some((_, since, n))) => (Some(*since), *n as u32 + 1),
        (Verdict::Inconclusive, None) => (Some(now), 1),
        _ => (None, 0),
    };
    CheckSeen {
        check: e.check.clone(),
        verdict: e.verdict,
        configured: e.action,
        detail: e.detail.clone(),
        inconclusive_since: since,
        inconclusive_rounds: rounds,
    }
}

/// Does what was decided, each change conditional on what the round saw.
async fn execute(state: &AppState, plan: &Plan, decision: Decision) -> Result<(), SourceError> {
    let db = &state.state_db;
    match decision {
        Decision::Idle | Decision::Refuse { .. } => Ok(()),
        Decision::Hold { clean, .. } => {
            if let (Some(clean), PlanState::Running) = (clean, plan.state) {
                store::set_clean(db, plan.id, plan.current_step, clean).await?;
            }
            Ok(())
        }
        Decision::FinishStep { next, version } => {
            let target = plan.steps.get(next as usize).map(|s| s.percentage);
            let n = note(Action::AutopilotStep)
                .values(None, target.map(|p| format!("{p} %")))
                .outcome(Outcome::Done, Some(format!("step {} reached (the flag already read it)", next + 1)));
            store::finish_step(db, plan.id, next, Some(&version), n).await?;
            Ok(())
        }
        Decision::Kill { why } => kill(state, plan, &why).await,
        Decision::EndKilled { why } => {
            let who = who_changed_the_flag(state).await;
            let why = format!("{why}, {who}");
            let n = note(Action::AutopilotEnd).outcome(Outcome::Done, Some(why.clone()));
            store::end_active(db, plan.id, PlanState::Killed, &why, n).await?;
            Ok(())
        }
        Decision::Pause { why, kind } => {
            let why = match kind {
                PauseKind::FlagChanged => format!("{why}, {}", who_changed_the_flag(state).await),
                _ => why,
            };
            if kind == PauseKind::Blind {
                let n = note(Action::AutopilotCheckBlind)
                    .values(None, Some("doubled_doses".into()))
                    .reason(Some(format!("plan #{}: {why}", plan.id)))
                    .outcome(Outcome::Done, Some("the plan pauses; kill-class checks keep running".into()));
                super::super::audit::record(db, &n).await?;
            }
            pause(state, plan, &why).await
        }
        Decision::Done { why } => {
            let n = note(Action::AutopilotDone).outcome(Outcome::Done, Some(why.clone()));
            store::transition(db, plan.id, PlanState::Running, PlanState::Done, None, n).await?;
            Ok(())
        }
        Decision::Step { next, percentage, expected_version, why } => {
            step(state, plan, next, percentage, expected_version, &why).await
        }
    }
}

/// The next step's write: announced (`begin_step`), then written on the version the round read
/// while the plan's row is held (`store::write_step`), and finished in that transaction.
async fn step(
    state: &AppState,
    plan: &Plan,
    next: i32,
    percentage: u8,
    expected_version: String,
    why: &str,
) -> Result<(), SourceError> {
    let db = &state.state_db;
    if !store::begin_step(db, plan.id, plan.current_step, next).await? {
        return Ok(());
    }
    let caller = autopilot(plan.id);
    let body = SetPercentage {
        percentage: i64::from(percentage),
        reason: format!(
            "autopilot plan #{}, step {} of {}: {} ({why})",
            plan.id,
            next + 1,
            plan.steps.len(),
            plan.reason
        ),
        expected_version,
        override_guards: plan.guard_override.is_some(),
        override_reason: plan.guard_override.as_ref().map(|g| format!("autopilot plan #{}: {g}", plan.id)),
    };
    let steps = plan.steps.len();
    let plan_reason = plan.reason.clone();
    let written = store::write_step(db, plan.id, next, async {
        match super::super::rollout::set_percentage(state, &caller, body).await {
            Ok(done) => store::StepWrite::Done(
                Box::new(
                    note(Action::AutopilotStep)
                        .values(Some(done.before), Some(done.after))
                        .reason(Some(plan_reason))
                        .outcome(Outcome::Done, Some(format!("step {} of {steps}: {why}", next + 1))),
                ),
                done.version,
            ),
            Err(e) => store::StepWrite::Failed(e),
        }
    })
    .await?;
    match written {
        Some(Ok(())) => Ok(()),
        None => {
            // A kill (or a person's pause or abort) took the plan meanwhile: nothing was written.
            store::drop_pending(db, plan.id).await?;
            Ok(())
        }
        Some(Err(e)) => {
            store::drop_pending(db, plan.id).await?;
            pause(state, plan, &format!("the flag could not be set to step {} ({percentage} %): {e}", next + 1)).await
        }
    }
}

/// Audits `autopilot.check_failing` (an event receivers are told of) for each check that has just
/// started failing and that this round's decision does not act on (a dry run, a check of a
/// paused plan). Dismissed checks are not news.
async fn newly_failing(
    state: &AppState,
    plan: &Plan,
    evaluations: &[Evaluation],
    decided: &super::decide::Round,
) -> Result<(), SourceError> {
    let db = &state.state_db;
    let before = store::latest_of(&store::evaluations(db, plan.id, 2 * evaluations.len() as i64).await?);
    for e in evaluations {
        let was_failing = before.iter().any(|b| b.check == e.check && b.verdict == Verdict::Fail);
        if e.verdict != Verdict::Fail
            || was_failing
            || decided.acted.contains(&e.check)
            || plan.dismissed.contains(&e.check)
        {
            continue;
        }
        let n = note(Action::AutopilotCheckFailing)
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

async fn pause(state: &AppState, plan: &Plan, why: &str) -> Result<(), SourceError> {
    let n = note(Action::AutopilotPause).outcome(Outcome::Done, Some(why.to_string()));
    store::transition(&state.state_db, plan.id, PlanState::Running, PlanState::Paused, Some(why), n).await?;
    Ok(())
}

/// A check that kills: the flag to 0 % through the kill switch, which ends the plan (as
/// `autopilot.kill`) before it writes. A write that fails leaves the kill pending: every round
/// retries it (`rollout::retry_kills`) and the failure is told to every receiver.
async fn kill(state: &AppState, plan: &Plan, why: &str) -> Result<(), SourceError> {
    let caller = autopilot(plan.id);
    let reason = format!("autopilot plan #{}: {why}", plan.id);
    if let Err(e) = super::super::rollout::kill(state, &caller, Some(reason)).await {
        tracing::error!(plan = plan.id, "the autopilot could not kill the rollout: {e}; it is retried every round");
    }
    Ok(())
}

/// Who made the flag's last change, as the audit trail names them.
async fn who_changed_the_flag(state: &AppState) -> String {
    match super::super::audit::last_flag_change(&state.state_db).await.ok().flatten() {
        Some((actor, action)) if action == Action::FlagExternalChange.as_str() => {
            format!("outside the dashboard ({actor})")
        }
        Some((actor, _)) => format!("by {actor}"),
        None => "by someone the audit trail does not name".into(),
    }
}
