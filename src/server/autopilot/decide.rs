//! The autopilot's judgement: what one round (or a person's Promote) does, decided from what it
//! saw, with no I/O. The driver (`driver.rs`) gathers an [`Observation`], calls [`decide`] and
//! executes the [`Decision`]; it decides nothing itself.
//!
//! The invariants, each enforced in one place:
//!
//! 1. **A kill is final.** Once the flag reads 0 % by anyone's hand after the plan started (a
//!    person, the alert hook, a check, kubectl), nothing automatic raises it: a flag that no
//!    longer holds the plan's percentage and reads 0 ends the plan (here), a step is written only
//!    on the flag version this round read (`Decision::Step::expected_version`, a conditional
//!    write), a kill ends the active plan in the same transition that asks for it
//!    (`rollout::kill`), and the step's bookkeeping holds only for an active plan (`store`).
//! 2. **Kill-class checks never sleep.** A failing check whose action is `kill` (always
//!    `doubled_doses` and `schema`: [`action_of`] is the one place that says what a check does)
//!    kills in every active state: running, paused, with a step pending, after a change made
//!    elsewhere, during a Promote. Nothing dismisses them or sets them to a dry run.
//! 3. **Nothing automatic lowers or jumps the flag.** A write only goes to the plan's next step,
//!    which is above the percentage the round read, unless the first step lowers the flag and the
//!    starter confirmed exactly that.
//! 4. **A kill that has not landed blocks every raise.** While a kill is pending (its write
//!    failed), the round decides the kill again and never a step.
//! 5. **Past the configured percentage, only with a recent rehearsal.** With
//!    `autopilot.require_rehearsal`, no step above its percentage is written (nor promoted to)
//!    unless a rollback rehearsal passed within its age ([`rehearsal_gate`]); the plan holds and
//!    says why.
//!
//! `tests` below checks these over generated histories (rounds whose writes race a person's
//! kill, Promote, pause, resume, dismiss, kubectl, failing writes and restarts).

use chrono::{DateTime, Duration, Utc};

use crate::api::autopilot::{CheckAction, PlanState, Verdict};

pub use crate::api::autopilot::KILL_CLASS;

/// Whether `check` is one of the checks nobody may dismiss or set to a dry run.
pub fn is_kill_class(check: &str) -> bool {
    KILL_CLASS.contains(&check)
}

/// What a failing `check` does: kill for the kill class whatever else is said; otherwise a
/// dismissal for this step makes it a dry run, and else the settings' word (`configured`).
pub fn action_of(check: &str, configured: CheckAction, dismissed: &[String]) -> CheckAction {
    if is_kill_class(check) {
        return CheckAction::Kill;
    }
    if dismissed.iter().any(|d| d == check) {
        return CheckAction::DryRun;
    }
    configured
}

mod seen;
pub use seen::{Budgets, CheckSeen, FlagSeen, Observation, PlanFacts, RehearsalGate};

/// Invariant 5: why a step to `percentage` may not be written now for want of a recent passing
/// rehearsal, or None when it may.
pub fn rehearsal_gate(percentage: u8, obs: &Observation, budgets: Budgets) -> Option<String> {
    let gate = budgets.rehearsal?;
    if percentage <= gate.above_percentage {
        return None;
    }
    let hours = gate.max_age_secs as f64 / 3600.0;
    match obs.rehearsed_at {
        Some(at) if obs.now - at <= Duration::seconds(gate.max_age_secs) => None,
        Some(at) => Some(format!(
            "the step to {percentage} % waits for a rollback rehearsal that passed within {hours} h (required above \
             {} %): the newest passed {:.1} h ago",
            gate.above_percentage,
            (obs.now - at).num_seconds() as f64 / 3600.0
        )),
        None => Some(format!(
            "the step to {percentage} % waits for a rollback rehearsal that passed within {hours} h (required above \
             {} %): none has passed on a fresh backup (or the rehearsals cannot be read)",
            gate.above_percentage
        )),
    }
}

/// What the round does.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The plan is not active: nothing.
    Idle,
    /// The flag to 0 % through the kill switch; the plan ends killed.
    Kill { why: String },
    /// The flag already reads 0 % by another hand: the plan ends killed, nothing is written.
    EndKilled { why: String },
    /// The pending step's write landed (the flag reads it, at `version`): its bookkeeping only.
    FinishStep { next: i32, version: String },
    /// The plan holds until a person acts.
    Pause { why: String, kind: PauseKind },
    /// The next step's write, conditional on the version this round read.
    Step { next: i32, percentage: u8, expected_version: String, why: String },
    /// The last step has baked.
    Done { why: String },
    /// Nothing moves; `clean`: whether the clean streak goes on (None: leave it).
    Hold { clean: Option<bool>, why: String },
    /// A Promote refused, with the sentence the person reads.
    Refuse { why: String },
}

/// Why a plan pauses, as far as the driver must tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseKind {
    /// A check failed, stayed inconclusive too long, or the plan cannot go on as it is.
    Check,
    /// The medical check is blind: a critical event besides the pause.
    Blind,
    /// The flag holds something else than the plan: the audit trail names who changed it.
    FlagChanged,
}

/// The round's decision, the checks it acts on, and whether a stale pending step is forgotten.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub decision: Decision,
    /// Checks whose failure this decision acts on (their evaluation is marked `acted`).
    pub acted: Vec<String>,
    /// The pending step's write did not land: forget it before anything else.
    pub drop_pending: bool,
}

fn round(decision: Decision) -> Round {
    Round { decision, acted: Vec::new(), drop_pending: false }
}

/// The checks failing this round whose failure does `action`.
fn failing(obs: &Observation, action: CheckAction) -> Vec<&CheckSeen> {
    obs.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail && action_of(&c.check, c.configured, &obs.dismissed) == action)
        .collect()
}

fn failed_text(c: &CheckSeen) -> String {
    format!("{} failed: {}", c.check, c.detail)
}

/// Decides one round for `plan`. Pure: the same plan and observation give the same decision.
/// Its phases, in order, each either decides (`Err`) or lets the next one look: the plan's
/// state, the kill-class checks and pending kills, the flag as read, a pending step, the flag
/// against the plan, a pause, the checks that pause and their budgets, and the next step.
pub fn decide(plan: &PlanFacts, obs: &Observation, budgets: Budgets) -> Round {
    match phases(plan, obs, budgets) {
        Ok(r) | Err(r) => r,
    }
}

fn phases(plan: &PlanFacts, obs: &Observation, budgets: Budgets) -> Result<Round, Round> {
    if !matches!(plan.state, PlanState::Running | PlanState::Paused) {
        return Err(round(match &obs.promote {
            Some(_) => Decision::Refuse { why: format!("plan #{} is {}: nothing to promote", plan.id, plan.state) },
            None => Decision::Idle,
        }));
    }
    kills(obs)?;
    let (percentage, version) = flag_read(plan, obs)?;
    let mut drop_pending = false;
    if let Some(next) = plan.pending_step {
        if plan.steps.get(next as usize).map(|s| s.percentage) == Some(percentage) {
            return Err(round(Decision::FinishStep { next, version }));
        }
        drop_pending = true;
    }
    let with_drop = |decision| Round { decision, acted: Vec::new(), drop_pending };
    flag_as_planned(plan, obs, percentage, &version).map_err(with_drop)?;
    if plan.state == PlanState::Paused {
        return Err(with_drop(match &obs.promote {
            Some(_) => Decision::Refuse { why: format!("plan #{} is paused; resume it before promoting", plan.id) },
            None => Decision::Hold { clean: None, why: "paused: kill-class checks are still evaluated".into() },
        }));
    }
    // Running: checks that pause.
    let pausing = failing(obs, CheckAction::Pause);
    if !pausing.is_empty() {
        let why = pausing.iter().map(|c| failed_text(c)).collect::<Vec<_>>().join("; ");
        let acted = pausing.iter().map(|c| c.check.clone()).collect();
        let decision = match &obs.promote {
            Some(_) => Decision::Refuse { why: format!("a check fails, so nothing is promoted: {why}") },
            None => Decision::Pause { why, kind: PauseKind::Check },
        };
        return Err(Round { decision, acted, drop_pending });
    }
    within_budgets(plan, obs, budgets).map_err(with_drop)?;
    Ok(with_drop(next_step(plan, obs, budgets, percentage, version)))
}

/// Invariant 2: a failing kill-class check kills in every active state. Invariant 4: a kill that
/// has not landed is asked again; the plan does not go on.
fn kills(obs: &Observation) -> Result<(), Round> {
    let flag_at = match &obs.flag {
        FlagSeen::Read { percentage, .. } => *percentage,
        FlagSeen::Unreadable(_) => None,
    };
    let killing = failing(obs, CheckAction::Kill);
    if !killing.is_empty() {
        let why = killing.iter().map(|c| failed_text(c)).collect::<Vec<_>>().join("; ");
        let acted = killing.iter().map(|c| c.check.clone()).collect();
        let decision = if flag_at == Some(0) && !obs.kill_pending {
            Decision::EndKilled { why: format!("{why} (the flag already reads 0 %)") }
        } else {
            Decision::Kill { why }
        };
        return Err(Round { decision, acted, drop_pending: false });
    }
    if obs.kill_pending {
        return Err(round(Decision::Kill { why: "a kill was asked for and the flag does not read 0 % yet".into() }));
    }
    Ok(())
}

/// The flag's percentage and version, or the decision when it cannot be read or understood.
fn flag_read(plan: &PlanFacts, obs: &Observation) -> Result<(u8, String), Round> {
    match &obs.flag {
        FlagSeen::Unreadable(e) => Err(round(match &obs.promote {
            Some(_) => Decision::Refuse { why: format!("the flag cannot be read ({e}): nothing is promoted") },
            None => Decision::Hold { clean: Some(false), why: format!("the flag cannot be read: {e}") },
        })),
        FlagSeen::Read { percentage: None, .. } => {
            let why = "the flag holds a value in an unknown format: the autopilot does not write over it".to_string();
            Err(round(pause_or_refuse(plan, obs, why, PauseKind::Check)))
        }
        FlagSeen::Read { percentage: Some(p), version } => Ok((*p, version.clone())),
    }
}

/// Invariant 1: the flag moved away from the plan; at 0 % that is a kill, and it is final. A
/// flag at 0 % on a version the plan did not write was written by somebody else since: a kill
/// too, even when 0 % is what the plan holds (a plan that started from 0 %).
fn flag_as_planned(plan: &PlanFacts, obs: &Observation, percentage: u8, version: &str) -> Result<(), Decision> {
    let rewritten = plan.flag_version.as_ref().is_some_and(|v| v != version);
    if percentage == 0 && rewritten {
        return Err(Decision::EndKilled { why: "the flag was written at 0 % since the plan last saw it".to_string() });
    }
    if let Some(expected) = plan.expected() {
        if percentage != expected {
            let why = format!("the flag was changed to {percentage} % instead of the plan's {expected} %");
            if percentage == 0 {
                return Err(Decision::EndKilled { why });
            }
            return Err(pause_or_refuse(plan, obs, why, PauseKind::FlagChanged));
        }
    }
    Ok(())
}

/// Budgets: a blind medical check is critical; any other inconclusive for too long pauses. A
/// Promote skips the bake, never the medical checks: they must pass in this very round.
fn within_budgets(plan: &PlanFacts, obs: &Observation, budgets: Budgets) -> Result<(), Decision> {
    let bake = plan.current().map_or(0, |s| s.bake_secs as i64);
    for c in obs.checks.iter().filter(|c| c.verdict == Verdict::Inconclusive) {
        if action_of(&c.check, c.configured, &obs.dismissed) == CheckAction::DryRun {
            continue;
        }
        if c.check == "doubled_doses" && c.inconclusive_rounds > budgets.blind_rounds {
            let why = format!(
                "doubled_doses has been blind for {} rounds ({}): no doubled dose can be seen",
                c.inconclusive_rounds, c.detail
            );
            return Err(pause_or_refuse(plan, obs, why, PauseKind::Blind));
        }
        let limit = budgets.inconclusive_secs.max(bake);
        if let Some(since) = c.inconclusive_since {
            if plan.current_step >= 0 && obs.now - since > Duration::seconds(limit) {
                let why = format!(
                    "{} has been inconclusive since {} (longer than {limit} s): {}",
                    c.check,
                    since.format("%Y-%m-%d %H:%M:%S UTC"),
                    c.detail
                );
                return Err(pause_or_refuse(plan, obs, why, PauseKind::Check));
            }
        }
    }
    if obs.promote.is_some() {
        let blind: Vec<&str> = obs
            .checks
            .iter()
            .filter(|c| is_kill_class(&c.check) && c.verdict != Verdict::Pass)
            .map(|c| c.check.as_str())
            .collect();
        if !blind.is_empty() {
            let why = format!("{} cannot be judged now, so nothing is promoted", blind.join(" and "));
            return Err(Decision::Refuse { why });
        }
    }
    Ok(())
}

/// Every check clean (or a Promote): the next step, the plan's end, or why not yet.
fn next_step(plan: &PlanFacts, obs: &Observation, budgets: Budgets, percentage: u8, version: String) -> Decision {
    let clean = obs.checks.iter().all(|c| {
        c.verdict == Verdict::Pass || action_of(&c.check, c.configured, &obs.dismissed) == CheckAction::DryRun
    });
    let due = obs.promote.is_some() || (clean && baked(plan, obs.now));
    if !due {
        let why = if clean { "baking".to_string() } else { "a check is not conclusive yet".to_string() };
        return Decision::Hold { clean: Some(clean), why };
    }
    let why = obs.promote.clone().unwrap_or_else(|| "every check passed for the whole bake time".into());
    let next = plan.current_step + 1;
    let Some(step) = plan.steps.get(next as usize) else {
        if let (Some(last), Some(started)) = (plan.current(), plan.step_started_at) {
            let held = (obs.now - started).num_seconds();
            if last.percentage == 100 && held < budgets.watch_secs && obs.promote.is_none() {
                let why = format!(
                    "watching: the flag has held 100 % for {held} s; the guide's legacy-share target is judged over \
                     {} s before the plan is done",
                    budgets.watch_secs
                );
                return Decision::Hold { clean: Some(clean), why };
            }
        }
        return Decision::Done { why };
    };
    if let Some(run) = &obs.rollback {
        return pause_or_refuse(plan, obs, format!("{run}: the rollout waits for it"), PauseKind::Check);
    }
    if let Some(why) = rehearsal_gate(step.percentage, obs, budgets) {
        return match &obs.promote {
            Some(_) => Decision::Refuse { why },
            None => Decision::Hold { clean: Some(clean), why },
        };
    }
    // Invariant 3: never down, unless the starter confirmed that the first step lowers the flag.
    if step.percentage < percentage && !(plan.current_step < 0 && plan.lower_confirmed) {
        let why = format!(
            "step {} ({} %) would lower the flag from {percentage} %: start a plan whose first step is at least \
             {percentage} %, or confirm the lowering at the start",
            next + 1,
            step.percentage
        );
        return pause_or_refuse(plan, obs, why, PauseKind::Check);
    }
    Decision::Step { next, percentage: step.percentage, expected_version: version, why }
}

fn pause_or_refuse(plan: &PlanFacts, obs: &Observation, why: String, kind: PauseKind) -> Decision {
    match (&obs.promote, plan.state) {
        (Some(_), _) => Decision::Refuse { why },
        (None, PlanState::Running) => Decision::Pause { why, kind },
        (None, _) => Decision::Hold { clean: None, why },
    }
}

/// Whether the current step has baked: started, and clean, for its whole bake time (the first
/// step is due as soon as a round is clean).
fn baked(plan: &PlanFacts, now: DateTime<Utc>) -> bool {
    let Some(step) = plan.current() else { return true };
    let bake = Duration::seconds(step.bake_secs as i64);
    // The clean streak starts at this round when it was broken before.
    let clean = plan.clean_since.unwrap_or(now);
    match plan.step_started_at {
        Some(started) => now - started >= bake && now - clean >= bake,
        None => false,
    }
}

/// Whether the plan is in its watch state: at a last step of 100 %, held for less than the watch.
pub fn watching(plan: &PlanFacts, now: DateTime<Utc>, watch_secs: i64) -> bool {
    let last = plan.current_step >= 0 && plan.current_step as usize + 1 == plan.steps.len();
    let at_100 = plan.current().is_some_and(|s| s.percentage == 100);
    let held = plan.step_started_at.map(|s| (now - s).num_seconds());
    matches!(plan.state, PlanState::Running | PlanState::Paused)
        && last
        && at_100
        && held.is_some_and(|h| h < watch_secs)
}

#[cfg(test)]
mod tests;
