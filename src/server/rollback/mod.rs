//! The guided rollback: the guide's plan as one supervised, persisted run.
//!
//! - `preconditions`: what must hold, and the dry run (every step's concrete actions).
//! - `steps`: one file per step, listed once in `steps::REGISTRY`.
//! - `machine`: the run's and the steps' states and every allowed transition.
//! - `store`: every SQL statement on the run tables; each transition is persisted with its audit
//!   entry in one transaction. At most one active run exists across every replica (a partial
//!   unique index), so concurrent starts get the same run.
//! - `executor`: drives a run while holding a PostgreSQL advisory lock for it. A run whose
//!   executor died (the lock is free while the run says running) is marked interrupted at its
//!   exact step; resuming it starts from that step, never from a completed one.
//! - This file: the service both doors call (start, retry, skip, abort, approve by a second
//!   operator, the deploy journal).

use crate::api::audit::AWAITING_APPROVAL;
pub mod archive;
pub mod deploys;
mod executor;
pub mod facts;
pub mod fill;
pub mod incident;
pub mod machine;
pub mod memory;
mod preconditions;
pub mod rehearsal;
mod roll_forward;
pub mod steps;
pub mod store;

use crate::api::audit::Action;
use crate::api::audit::Outcome;
use crate::api::auth::Identity;
use crate::api::check::Check;
use crate::api::rollback::{
    Choices, DeployEntry, NewDeploy, PlanRequest, RollbackPlan, RunAction, RunActionBody, RunState, RunView,
    StartRollback,
};

use super::caller::Caller;
use super::error::db_err;
use super::error::ApiError;
use super::rollout::check_reason;
use super::state::AppState;
pub use executor::recover;
use executor::spawn_drive;
use store::{NewRun, Note, StepUpdate};

pub struct Service<'a> {
    state: &'a AppState,
}

/// A start request that passed its own checks (who, typed confirmations, reasons).
struct Confirmed {
    reason: String,
    choices: Choices,
    bypass: Option<String>,
    acknowledged_rows: i64,
}

impl<'a> Service<'a> {
    pub fn new(state: &'a AppState) -> Self {
        Service { state }
    }

    /// The dry run: preconditions and the whole plan with concrete values. Executes nothing.
    /// Shared by everyone asking within a second (`Services::rollback_plan`); a start surveys
    /// afresh.
    pub async fn plan(&self, choices: Choices) -> Result<RollbackPlan, ApiError> {
        let key = match (choices.restore_data, choices.fill_dose) {
            (false, false) => "keep",
            (true, false) => "restore",
            (false, true) => "fill",
            (true, true) => "fill+restore",
        };
        let survey = || async { Ok(preconditions::survey(self.state, choices).await?.plan) };
        self.state.services.rollback_plan.get(key, survey).await
    }

    pub async fn plan_request(&self, body: PlanRequest) -> Result<RollbackPlan, ApiError> {
        self.plan(body.choices()).await
    }

    pub async fn run(&self, id: i64) -> Result<RunView, ApiError> {
        Ok(self.load(id).await?.view())
    }

    async fn load(&self, id: i64) -> Result<store::Run, ApiError> {
        store::load(&self.state.state_db, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("there is no rollback run #{id}")))
    }

    pub async fn latest_run(&self) -> Result<Option<RunView>, ApiError> {
        match store::latest_run_id(&self.state.state_db).await? {
            Some(id) => Ok(Some(self.run(id).await?)),
            None => Ok(None),
        }
    }

    pub async fn deploys(&self, limit: i64) -> Result<Vec<DeployEntry>, ApiError> {
        Ok(deploys::list(&self.state.state_db, limit).await?)
    }

    pub async fn incident_markdown(&self, id: i64) -> Result<String, ApiError> {
        store::incident(&self.state.state_db, id)
            .await?
            .map(|(_, md)| md)
            .ok_or_else(|| ApiError::NotFound(format!("there is no incident #{id}")))
    }

    /// `POST /api/v1/rollback`.
    pub async fn start(&self, caller: &Caller, body: StartRollback) -> Result<RunView, ApiError> {
        let result = self.try_start(caller, body).await;
        self.recorded(caller, Action::RollbackStart, result).await
    }

    async fn try_start(&self, caller: &Caller, body: StartRollback) -> Result<RunView, ApiError> {
        let s = self.state;
        operator(caller)?;
        let c = self.confirmed(body)?;
        // A double click, or a second operator: the run already going is the answer.
        if let Some(id) = store::active_run_id(&s.state_db).await? {
            return Ok(RunView { joined: true, ..self.run(id).await? });
        }
        let survey = preconditions::survey(s, c.choices).await?;
        // A concurrent start created the run while this one surveyed: join it, as above.
        if let Some(id) = survey.plan.active_run {
            return Ok(RunView { joined: true, ..self.run(id).await? });
        }
        all_passed(&survey.plan.preconditions)?;
        data_loss_acknowledged(survey.plan.data_loss_rows.unwrap_or_default(), c.acknowledged_rows)?;
        let initial = machine::started(s.settings.rollback.require_approval, c.bypass.is_some());
        let detail = match (&c.bypass, initial) {
            (Some(r), _) => Some(format!("approval bypassed in an emergency: {r}")),
            (None, RunState::AwaitingApproval) => Some(AWAITING_APPROVAL.into()),
            _ => None,
        };
        let new = NewRun {
            actor: caller.name(),
            reason: &c.reason,
            environment: &s.settings.environment,
            state: initial,
            choices: c.choices,
            bypass_reason: c.bypass.as_deref(),
            memory: &survey.memory,
            plan: serde_json::to_value(&survey.plan).unwrap_or_default(),
            steps: steps::REGISTRY
                .iter()
                .map(|step| (step.name(), step.title(), machine::planned_step(step.chosen(c.choices))))
                .collect(),
        };
        let note = caller
            .entry(Action::RollbackStart, "")
            .values(survey.plan.from_revision.clone(), survey.plan.target_revision.clone())
            .reason(Some(c.reason.clone()))
            .outcome(Outcome::Done, detail);
        let Some(id) = store::create_run(&s.state_db, new, note).await? else {
            // Another start won the race an instant ago.
            let id = store::active_run_id(&s.state_db)
                .await?
                .ok_or_else(|| ApiError::Failed("a run was started concurrently but could not be found".into()))?;
            return Ok(RunView { joined: true, ..self.run(id).await? });
        };
        if initial == RunState::Running {
            spawn_drive(s.clone(), id);
        }
        self.run(id).await
    }

    /// The start request's own checks: the environment's name and RESTORE typed, reasons given.
    fn confirmed(&self, b: StartRollback) -> Result<Confirmed, ApiError> {
        let environment = &self.state.settings.environment;
        let reason = check_reason(&b.reason, "a reason", true)?.unwrap_or_default();
        if &b.confirm_environment != environment {
            return Err(ApiError::BadRequest(format!(
                "the typed confirmation {:?} is not the environment's name; type {:?} exactly",
                b.confirm_environment, environment
            )));
        }
        if b.restore_data && b.restore_confirmation.as_deref() != Some("RESTORE") {
            return Err(ApiError::BadRequest(
                "restoring data needs its own confirmation: restore_confirmation = \"RESTORE\"".into(),
            ));
        }
        if b.fill_dose && b.fill_confirmation.as_deref() != Some("FILL") {
            return Err(ApiError::BadRequest(
                "filling dose from insulin_short needs its own confirmation: fill_confirmation = \"FILL\"".into(),
            ));
        }
        let bypass = b
            .emergency_bypass_reason
            .as_deref()
            .map(|r| check_reason(r, "emergency_bypass_reason", true))
            .transpose()?
            .flatten();
        let choices = Choices { restore_data: b.restore_data, fill_dose: b.fill_dose };
        Ok(Confirmed { reason, choices, bypass, acknowledged_rows: b.acknowledge_data_loss_rows })
    }

    /// `POST /api/v1/rollback/{id}/{action}`.
    pub async fn act(
        &self,
        caller: &Caller,
        id: i64,
        action: RunAction,
        body: RunActionBody,
    ) -> Result<RunView, ApiError> {
        let result = self.try_act(caller, id, action, body).await;
        self.recorded(caller, action.audited_as(), result).await
    }

    async fn try_act(
        &self,
        caller: &Caller,
        id: i64,
        action: RunAction,
        body: RunActionBody,
    ) -> Result<RunView, ApiError> {
        let me = operator(caller)?;
        let reason =
            body.reason.map(|r| check_reason(&r, "the reason", action == RunAction::Skip)).transpose()?.flatten();
        if action == RunAction::Skip && reason.is_none() {
            return Err(ApiError::BadRequest("skipping a step needs a reason".into()));
        }
        let run = self.load(id).await?;
        let by = Actor { caller, me, reason: reason.as_deref() };
        match action {
            RunAction::Approve => self.approve(&run, &by).await?,
            RunAction::Retry | RunAction::Skip => self.resume(&run, action, &by).await?,
            RunAction::Abort => self.abort(&run, &by).await?,
            RunAction::ScaleBack => self.scale_back(&run, &by).await?,
        }
        self.run(id).await
    }

    async fn approve(&self, run: &store::Run, by: &Actor<'_>) -> Result<(), ApiError> {
        let id = run.id;
        let to = machine::approve(id, run.state).map_err(conflict)?;
        if run.actor == by.me.user {
            return Err(ApiError::Forbidden(format!(
                "{} started run #{id}; a second operator must approve it (or start with an emergency bypass reason)",
                by.me.user
            )));
        }
        let note = by.note(Action::RollbackApprove, Some(run.state.to_string()), Some(to.to_string()));
        let moved = store::transition(&self.state.state_db, id, run.state, to, Some(&by.me.user), note).await?;
        if !moved {
            return Err(conflict(format!("run #{id} changed state meanwhile")));
        }
        spawn_drive(self.state.clone(), id);
        Ok(())
    }

    /// Retry or skip the step a stopped or interrupted run is at, and let it go on.
    async fn resume(&self, run: &store::Run, action: RunAction, by: &Actor<'_>) -> Result<(), ApiError> {
        let (db, id) = (&self.state.state_db, run.id);
        let to = machine::resume(id, run.state).map_err(conflict)?;
        let step = run.current_step().ok_or_else(|| conflict(format!("run #{id} has no step left")))?;
        let (step_state, label, skip_reason) = if action == RunAction::Skip {
            (machine::skip_step(), Action::RollbackSkip, by.reason)
        } else {
            (machine::retry_step(), Action::RollbackRetry, None)
        };
        let note = by.note(
            label,
            Some(format!("step {} {}: {}", step.index, step.name, step.state)),
            Some(step_state.to_string()),
        );
        let update = StepUpdate { skip_reason, ..StepUpdate::to(step_state) };
        let run_note = store::executor_note(
            Action::RollbackResume,
            Some(to.to_string()),
            Some(format!("from step {}", step.index)),
            Outcome::Done,
        );
        let moved = store::resume(db, id, (run.state, to), (step.index, update, note), run_note).await?;
        if !moved {
            return Err(conflict(format!("run #{id} changed state meanwhile")));
        }
        spawn_drive(self.state.clone(), id);
        Ok(())
    }

    /// After an abort that left the writers stopped (step 1 done, step 7 never reached): scale
    /// them back to the count the run remembered, audited as `rollback.scale_back`.
    async fn scale_back(&self, run: &store::Run, by: &Actor<'_>) -> Result<(), ApiError> {
        let id = run.id;
        let Some(want) = run.view().writers_left_stopped() else {
            return Err(conflict(format!(
                "run #{id} did not leave the writers stopped: only an aborted run that stopped them and never scaled \
                 them back offers this"
            )));
        };
        let want = i32::try_from(want).map_err(|_| conflict(format!("run #{id} remembers {want} replicas")))?;
        let cluster = self.state.writer_cluster.as_ref().map_err(|e| ApiError::Unavailable(e.clone()))?;
        let dep = &self.state.settings.writer.deployment;
        let now = cluster.deployment_replicas(dep).await.map_err(ApiError::Unavailable)?;
        let note = by.note(Action::RollbackScaleBack, Some(now.desired.to_string()), Some(want.to_string()));
        if now.desired != want {
            cluster.scale_deployment(dep, want).await.map_err(ApiError::Unavailable)?;
        }
        super::audit::record(&self.state.state_db, &note.outcome(Outcome::Done, None)).await?;
        Ok(())
    }

    async fn abort(&self, run: &store::Run, by: &Actor<'_>) -> Result<(), ApiError> {
        let id = run.id;
        let to = machine::abort(id, run.state).map_err(conflict)?;
        let note = by.note(Action::RollbackAbort, Some(run.state.to_string()), Some(to.to_string()));
        if !store::transition(&self.state.state_db, id, run.state, to, None, note).await? {
            return Err(conflict(format!("run #{id} changed state meanwhile")));
        }
        let run = self.run(id).await?;
        incident::record(self.state, &run).await?;
        Ok(())
    }

    /// `POST /api/v1/deploys`.
    pub async fn record_deploy(&self, caller: &Caller, b: NewDeploy) -> Result<DeployEntry, ApiError> {
        let result = async {
            let me = operator(caller)?;
            for (name, v) in [("revision", &b.revision), ("previous_revision", &b.previous_revision)] {
                let v = v.trim();
                // Never an option to the downgrade's program (argv `downgrade {previous_revision}`).
                if v.is_empty()
                    || v.len() > 64
                    || v.starts_with('-')
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(ApiError::BadRequest(format!(
                        "{name} must be an Alembic revision id (letters, digits, _ and -, not starting with -), not {v:?}"
                    )));
                }
            }
            // The journal vouches for the revision: one the dashboard saw the diary at (before, or now).
            let now = match self.state.diary.as_ref() {
                Ok(d) => d.schema().await.ok().and_then(|sc| sc.alembic_revision),
                Err(_) => None,
            };
            if now.as_deref() != Some(b.revision.trim()) && !deploys::observed(&self.state.state_db, b.revision.trim()).await? {
                return Err(ApiError::BadRequest(format!(
                    "the deploy journal has never seen the diary at revision {:?}: record the previous revision of one \
                     it has seen (GET /api/v1/deploys)",
                    b.revision.trim()
                )));
            }
            if b.revision.trim() == b.previous_revision.trim() {
                return Err(ApiError::BadRequest("a revision cannot be its own previous revision".into()));
            }
            let note = b.note.as_deref().map(|n| check_reason(n, "the note", false)).transpose()?.flatten();
            let mut tx = self.state.state_db.begin().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
            let entry = deploys::insert(
                &mut *tx,
                b.revision.trim(),
                Some(b.previous_revision.trim()),
                "operator",
                &me.user,
                note.as_deref(),
            )
            .await?;
            let audit = caller
                .entry(Action::DeployRecord, "deploy journal")
                .values(Some(entry.previous_revision.clone().unwrap_or_default()), Some(entry.revision.clone()))
                .reason(note);
            super::audit::record(&mut *tx, &audit).await?;
            tx.commit().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
            Ok(entry)
        }
        .await;
        self.recorded(caller, Action::DeployRecord, result).await
    }

    /// Records a request refused before it could be understood (a bad body), and passes the
    /// error on; who may not act at all hears that first, whatever their body said.
    pub async fn refuse<T>(&self, caller: &Caller, action: Action, e: ApiError) -> Result<T, ApiError> {
        let e = operator(caller).err().unwrap_or(e);
        self.recorded(caller, action, Err(e)).await
    }

    /// Passes `result` on, a refusal or failure recorded first (`audit::refusal_recorded`).
    async fn recorded<T>(&self, caller: &Caller, action: Action, result: Result<T, ApiError>) -> Result<T, ApiError> {
        // A journal entry or a run's change changes the plan: the next look surveys afresh.
        if result.is_ok() {
            self.state.services.rollback_plan.clear();
        }
        caller.refusal_recorded(&self.state.state_db, &self.state.services.metrics, action, "rollback", result).await
    }
}

/// An operator acting on a run, for its audit entries.
struct Actor<'a> {
    caller: &'a Caller,
    me: &'a Identity,
    reason: Option<&'a str>,
}

impl Actor<'_> {
    fn note(&self, action: Action, before: Option<String>, after: Option<String>) -> Note {
        self.caller.entry(action, "").values(before, after).reason(self.reason.map(str::to_string))
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::Conflict { code: "run_state", message, details: None }
}

fn all_passed(preconditions: &[Check]) -> Result<(), ApiError> {
    let failed: Vec<&Check> = preconditions.iter().filter(|p| !p.passed).collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "precondition_failed",
        message: format!(
            "a precondition fails: {}",
            failed.iter().map(|p| format!("{}: {}", p.name, p.detail)).collect::<Vec<_>>().join("; ")
        ),
        details: serde_json::to_value(preconditions).ok(),
    })
}

/// Writers add split rows until they are stopped, so the count may have grown a little since
/// the operator saw it; it may not have shrunk, nor grown by more than 1 % (10 rows).
fn data_loss_acknowledged(now_rows: i64, ack: i64) -> Result<(), ApiError> {
    if ack < 0 || now_rows < ack || now_rows > ack + (ack / 100).max(10) {
        return Err(ApiError::Conflict {
            code: "data_loss_not_acknowledged",
            message: format!(
                "the downgrade drops the split values of {now_rows} row(s); acknowledge that number as shown in the plan (you sent {ack})"
            ),
            details: None,
        });
    }
    Ok(())
}

/// Who may run a rollback: operators (401 for nobody, 403 for a viewer).
fn operator(caller: &Caller) -> Result<&Identity, ApiError> {
    caller.operator("a rollback", "run a rollback")
}
