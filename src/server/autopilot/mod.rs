//! The autopilot: a rollout plan that steps the flag forward while every check passes for a
//! step's whole bake time, and stops itself (kill or pause) when one fails.
//!
//! - `plan`: what makes steps valid, their legacy-share ceilings, the schedule.
//! - `checks`: the checks, each pass, fail or inconclusive with its value, threshold and query.
//! - `custom`: the settings' own PromQL checks (condition, failure limit, error limit, no data).
//! - `stats`: the sample-ratio test.
//! - `store`: every SQL statement on the autopilot's tables, each change with its audit entry.
//! - `driver`: the rounds, one replica at a time, and every action the autopilot takes.
//! - This file: the service both doors call (view, start, pause, resume, promote, dismiss, abort).
//!
//! The autopilot writes the flag through the same conditional write, read-back and audit trail
//! as a person (`rollout::set_percentage`, `rollout::kill`), as the actor `autopilot`. It never
//! runs the schema downgrade: that is the guided rollback, for a person to start.

pub mod checks;
pub mod custom;
pub mod decide;
pub mod driver;
pub mod facts;
pub mod plan;
pub mod stats;
pub mod store;

use crate::api::audit::Action;
use chrono::Utc;

use crate::api::audit::Outcome;
use crate::api::autopilot::{AutopilotView, PlanAction, PlanActionBody, PlanState, PlanStep, StartPlan};

use super::caller::Caller;
use super::error::ApiError;
use super::rollout::check_reason;
use super::state::AppState;

pub use driver::tick;

pub struct Service<'a> {
    state: &'a AppState,
}

fn operator(caller: &Caller) -> Result<&crate::api::auth::Identity, ApiError> {
    caller.operator("steering the autopilot", "steer the autopilot")
}

fn conflict(message: String) -> ApiError {
    ApiError::Conflict { code: "plan_state", message, details: None }
}

impl<'a> Service<'a> {
    pub fn new(state: &'a AppState) -> Self {
        Service { state }
    }

    /// `GET /api/v1/autopilot`.
    pub async fn view(&self, caller: &Caller) -> Result<AutopilotView, ApiError> {
        let db = &self.state.state_db;
        let plan = store::latest(db).await?;
        let history = match &plan {
            Some(p) => store::evaluations(db, p.id, 200).await?,
            None => Vec::new(),
        };
        let latest = store::latest_of(&history);
        let a = &self.state.settings.autopilot;
        let interval_secs = a.interval_secs.unwrap_or(self.state.settings.refresh_interval_secs);
        let charts = latest
            .iter()
            .filter_map(|e| super::charts::autopilot::check_chart(&e.check, &history, interval_secs))
            .map(|chart| {
                let drawn = super::charts::draw_svg(&chart, (480, 170));
                crate::api::autopilot::CheckChart { check: chart.title, svg: drawn.svg, points: drawn.points }
            })
            .collect();
        Ok(AutopilotView {
            plan: plan.map(|p| p.view(Utc::now(), a.watch_secs as i64)),
            latest,
            history,
            defaults: a.steps.clone(),
            interval_secs,
            me: caller.who().cloned(),
            charts,
            pending_kills: super::kill_requests::pending(db).await?,
        })
    }

    /// `POST /api/v1/autopilot`: a new plan, the settings' steps unless the body gives its own.
    pub async fn start(&self, caller: &Caller, body: StartPlan) -> Result<AutopilotView, ApiError> {
        let result = self.try_start(caller, body).await;
        self.recorded(caller, Action::AutopilotStart, result).await
    }

    async fn try_start(&self, caller: &Caller, body: StartPlan) -> Result<AutopilotView, ApiError> {
        let me = operator(caller)?;
        let reason = check_reason(&body.reason, "a reason", true)?.unwrap_or_default();
        let steps = match (body.steps, body.steps_text) {
            (Some(_), Some(_)) => return Err(ApiError::BadRequest("give steps or steps_text, not both".into())),
            (None, Some(text)) => plan::parse_steps(&text).map_err(|e| ApiError::BadRequest(format!("steps: {e}")))?,
            (Some(steps), None) => steps,
            (None, None) => self.state.settings.autopilot.steps.clone(),
        };
        plan::check_steps(&steps).map_err(ApiError::BadRequest)?;
        let guard_override = body
            .override_guards_reason
            .as_deref()
            .map(|r| check_reason(r, "override_guards_reason", false))
            .transpose()?
            .flatten();
        let db = &self.state.state_db;
        if let Some(k) = super::kill_requests::pending(db).await?.first() {
            return Err(conflict(format!(
                "a kill asked by {} has not landed yet: no plan starts until it does",
                k.actor
            )));
        }
        let reading = self.state.flags.read().await?;
        let start_percentage = reading.parsed.and_then(Result::ok).map(|p| p.get());
        let lower_confirmed = lowering(start_percentage, &steps, body.confirm_lower.as_deref())?;
        let doubled_at_start = self.doubled_now().await?;
        let shown: Vec<String> = steps.iter().map(|s| format!("{} % {} s", s.percentage, s.bake_secs)).collect();
        let detail = [
            guard_override.as_ref().map(|g| format!("failed guards overridden for the plan: {g}")),
            lower_confirmed.clone().map(|c| format!("the first step lowers the flag, confirmed: {c}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let detail = (!detail.is_empty()).then(|| detail.join("; "));
        let n = caller
            .entry(Action::AutopilotStart, "")
            .values(None, Some(shown.join(", ")))
            .reason(Some(reason.clone()))
            .outcome(Outcome::Done, detail);
        let new = store::NewPlan {
            actor: &me.user,
            reason: &reason,
            steps: &steps,
            guard_override: guard_override.as_deref(),
            start_percentage,
            lower_confirmed: lower_confirmed.as_deref(),
            doubled_at_start: &doubled_at_start,
            flag_version: reading.version.as_deref(),
        };
        let Some(_) = store::create(db, new, n).await? else {
            let id = store::active_id(db).await?.unwrap_or_default();
            return Err(conflict(format!("plan #{id} is already active: pause, abort or let it finish first")));
        };
        self.nudge();
        self.view(caller).await
    }

    /// `POST /api/v1/autopilot/{action}`.
    pub async fn act(
        &self,
        caller: &Caller,
        action: PlanAction,
        body: PlanActionBody,
    ) -> Result<AutopilotView, ApiError> {
        let result = self.try_act(caller, action, body).await;
        self.recorded(caller, action.audited_as(), result).await
    }

    async fn try_act(
        &self,
        caller: &Caller,
        action: PlanAction,
        body: PlanActionBody,
    ) -> Result<AutopilotView, ApiError> {
        operator(caller)?;
        let needs_reason = matches!(action, PlanAction::Promote | PlanAction::Dismiss);
        let reason = body.reason.as_deref().map(|r| check_reason(r, "the reason", needs_reason)).transpose()?.flatten();
        if needs_reason && reason.is_none() {
            return Err(ApiError::BadRequest(format!("{} needs a reason", action.as_str())));
        }
        let db = &self.state.state_db;
        let id = store::active_id(db).await?.ok_or_else(|| conflict("no autopilot plan is active".into()))?;
        let plan = store::load(db, id).await?.ok_or_else(|| conflict("the plan ended meanwhile".into()))?;
        let entry = |action: Action| caller.entry(action, "").reason(reason.clone());
        let moved = match action {
            PlanAction::Pause => {
                if plan.state != PlanState::Running {
                    return Err(conflict(format!("plan #{id} is {}, not running", plan.state)));
                }
                let why = format!(
                    "paused by {}{}",
                    caller.name(),
                    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                );
                store::transition(
                    db,
                    id,
                    PlanState::Running,
                    PlanState::Paused,
                    Some(&why),
                    entry(Action::AutopilotPause),
                )
                .await?
            }
            PlanAction::Resume => {
                if plan.state != PlanState::Paused {
                    return Err(conflict(format!("plan #{id} is {}, not paused", plan.state)));
                }
                self.flag_matches(&plan).await?;
                store::transition(db, id, PlanState::Paused, PlanState::Running, None, entry(Action::AutopilotResume))
                    .await?
            }
            PlanAction::Promote => self.promote(caller, &plan, reason.as_deref().unwrap_or_default()).await?,
            PlanAction::Dismiss => {
                let check = body.check.unwrap_or_default();
                let names = checks::all_names(&self.state.settings.autopilot);
                if !names.contains(&check) {
                    return Err(ApiError::BadRequest(format!("check must be one of {}", names.join(", "))));
                }
                if decide::is_kill_class(&check) {
                    return Err(ApiError::BadRequest(format!(
                        "{check} cannot be dismissed: a doubled dose or a missing split column harms patients' \
                         records, so it kills in every state; fix the cause, or kill or abort the plan"
                    )));
                }
                let n = entry(Action::AutopilotDismiss).values(None, Some(check.clone()));
                store::dismiss(db, id, plan.current_step, &check, n).await?
            }
            PlanAction::Abort => {
                let n = entry(Action::AutopilotAbort)
                    .outcome(Outcome::Done, Some(format!("the flag stays where it is ({})", step_text(&plan))));
                store::transition(db, id, plan.state, PlanState::Aborted, None, n).await?
            }
        };
        if !moved {
            return Err(conflict(format!("plan #{id} changed meanwhile; look again")));
        }
        self.nudge();
        self.view(caller).await
    }

    /// Skips the rest of the bake time: the next step now, through the driver's own path and
    /// under its lock (so no round runs at the same time).
    /// A round that may skip the rest of the bake time, decided like any round (`decide`: a
    /// failing check, a kill, a flag changed elsewhere refuse it) and under the plan's lock.
    async fn promote(&self, caller: &Caller, plan: &store::Plan, reason: &str) -> Result<bool, ApiError> {
        if plan.state != PlanState::Running {
            return Err(conflict(format!("plan #{} is {}; resume it before promoting", plan.id, plan.state)));
        }
        let why = format!("promoted by {}: {reason}", caller.name());
        driver::promote(self.state, plan.id, why).await?.map_err(conflict)?;
        Ok(true)
    }

    /// Resuming needs the flag where the plan left it.
    async fn flag_matches(&self, plan: &store::Plan) -> Result<(), ApiError> {
        let Some(expected) = plan.facts().expected() else { return Ok(()) };
        let now = self.state.flags.read().await?.parsed.and_then(Result::ok).map(|p| p.get());
        if now != Some(expected) {
            return Err(conflict(format!(
                "the flag holds {} but the plan expects {expected} %: set it back on /rollout, or abort the plan",
                now.map(|p| format!("{p} %")).unwrap_or_else(|| "an unknown value".into()),
            )));
        }
        Ok(())
    }

    /// The ids of the records doubled now (the doubled-dose check's baseline). A plan does not
    /// start while the diary cannot be read: its medical check would have nothing to compare.
    async fn doubled_now(&self) -> Result<Vec<i64>, ApiError> {
        let read = super::service::ask(self.state, super::error::Source::DiaryDatabase, async {
            let (diary, schema) = super::service::diary_and_schema(self.state).await?;
            if !schema.has_split_columns() {
                return Ok(Some(Vec::new()));
            }
            diary.doubled_ids(MAX_DOUBLED_AT_START).await
        })
        .await?;
        read.ok_or_else(|| {
            conflict(format!(
                "more than {MAX_DOUBLED_AT_START} records already copy dose into both parts: repair them before a plan \
                 starts (GET /api/v1/records/doubled lists them)"
            ))
        })
    }

    /// Runs a round soon rather than at the next interval.
    fn nudge(&self) {
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(e) = driver::tick(&state).await {
                tracing::warn!("autopilot round: {e}");
            }
        });
    }

    /// Records a refused body (see the rollback's `refuse`).
    pub async fn refuse<T>(&self, caller: &Caller, action: Action, e: ApiError) -> Result<T, ApiError> {
        let e = operator(caller).err().unwrap_or(e);
        self.recorded(caller, action, Err(e)).await
    }

    /// Passes `result` on, a refusal or failure recorded first (`audit::refusal_recorded`).
    async fn recorded<T>(&self, caller: &Caller, action: Action, result: Result<T, ApiError>) -> Result<T, ApiError> {
        caller.refusal_recorded(&self.state.state_db, &self.state.services.metrics, action, "autopilot", result).await
    }
}

/// Most doubled records a plan may start with (its check compares the table with them).
const MAX_DOUBLED_AT_START: i64 = 10_000;

/// A first step below the flag's percentage: refused unless `confirm` says exactly
/// `lower from <now> % to <first> %`; the confirmation, when needed and right.
fn lowering(now: Option<u8>, steps: &[PlanStep], confirm: Option<&str>) -> Result<Option<String>, ApiError> {
    let (Some(now), Some(first)) = (now, steps.first().map(|s| s.percentage)) else { return Ok(None) };
    if first >= now {
        return Ok(None);
    }
    let expected = format!("lower from {now} % to {first} %");
    match confirm.map(str::trim) {
        Some(c) if c == expected => Ok(Some(expected)),
        _ => Err(ApiError::Conflict {
            code: "would_lower",
            message: format!(
                "the flag is at {now} % and the plan's first step is {first} %: the plan would lower it. Start from \
                 {now} % or more, or type confirm_lower \"{expected}\""
            ),
            details: None,
        }),
    }
}

fn step_text(plan: &store::Plan) -> String {
    match plan.current() {
        Some(s) => format!("step {} of {}, {} %", plan.current_step + 1, plan.steps.len(), s.percentage),
        None => "before the first step".into(),
    }
}
