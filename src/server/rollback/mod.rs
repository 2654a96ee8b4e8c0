//! The guided rollback: the guide's plan as one supervised, persisted run.
//!
//! - `plan`: the preconditions and every step's concrete actions (the dry run).
//! - `start`: operators only, typed confirmation, acknowledged data loss; at most one active
//!   run across every replica (a partial unique index), so concurrent starts get the same run.
//! - The executor drives a run while holding a PostgreSQL advisory lock for it; every
//!   transition is persisted with its audit entry in one transaction. A run whose executor died
//!   (the lock is free while the run says running) is marked interrupted at its exact step;
//!   resuming it starts from that step, never from a completed one.
//! - `act`: retry, skip (with a reason), abort, approve (by a second operator).

pub mod deploys;
pub mod incident;
pub mod steps;
mod store;

use std::time::Duration;

use crate::api::audit::Outcome;
use crate::api::auth::Identity;
use crate::api::rollback::{
    DeployEntry, NewDeploy, PlanRequest, Precondition, RollbackPlan, RunAction, RunActionBody, RunView, StartRollback,
};

use super::error::{ApiError, SourceError};
use super::rollout::{check_reason, operator};
use super::state::AppState;
use steps::{Memory, Remember, STEPS};
use store::{db_err, Note};

pub struct Service<'a> {
    state: &'a AppState,
}

/// What the plan found out, kept for the start.
struct Survey {
    plan: RollbackPlan,
    memory: Memory,
}

impl<'a> Service<'a> {
    pub fn new(state: &'a AppState) -> Self {
        Service { state }
    }

    /// The dry run: preconditions and the whole plan with concrete values. Executes nothing.
    pub async fn plan(&self, restore_data: bool) -> Result<RollbackPlan, ApiError> {
        Ok(self.survey(restore_data).await?.plan)
    }

    pub async fn plan_request(&self, body: Result<PlanRequest, ApiError>) -> Result<RollbackPlan, ApiError> {
        self.plan(body?.restore_data).await
    }

    async fn survey(&self, restore_data: bool) -> Result<Survey, ApiError> {
        let s = self.state;
        let db = &s.state_db;
        let mut pre = Vec::new();
        let active = store::active_run_id(db).await.map_err(ApiError::Unavailable)?;
        pre.push(match active {
            None => ok("no_active_run", "no other rollback run is active".into()),
            Some(id) => fail("no_active_run", format!("run #{id} is active; open it instead")),
        });
        // The revisions: current from the diary, previous from the deploy journal.
        // One read of the diary's schema serves the revision and the data-loss count.
        let diary = match s.diary.as_ref() {
            Ok(d) => d.schema().await.map(|sc| (d, sc)),
            Err(e) => Err(e.clone()),
        };
        let current = diary.as_ref().map(|(_, sc)| sc.alembic_revision.clone()).map_err(Clone::clone);
        let (from, target) = match &current {
            Ok(Some(rev)) => {
                let prev = deploys::previous_of(db, rev).await.map_err(ApiError::Unavailable)?;
                pre.push(match &prev {
                    Some(p) => ok("previous_revision_known", format!("the deploy journal says {rev} came after {p}")),
                    None => fail(
                        "previous_revision_known",
                        format!("the deploy journal does not know the revision before {rev}; enter it (POST /api/v1/deploys)"),
                    ),
                });
                (Some(rev.clone()), prev)
            }
            Ok(None) => {
                pre.push(fail("previous_revision_known", "the diary database has no Alembic revision".into()));
                (None, None)
            }
            Err(e) => {
                pre.push(fail("previous_revision_known", format!("cannot read the current revision: {e}")));
                (None, None)
            }
        };
        pre.push(self.backup_check().await);
        // A schema that cannot be read is a failed precondition, never "0 rows lost".
        let data_loss = match &diary {
            Ok((d, sc)) => {
                let mut conds = Vec::new();
                if sc.insulin_short {
                    conds.push("insulin_short IS NOT NULL");
                }
                if sc.insulin_long {
                    conds.push("insulin_long IS NOT NULL");
                }
                if conds.is_empty() {
                    Ok(0)
                } else {
                    sqlx::query_scalar::<_, i64>(&format!(
                        "SELECT count(*) FROM {} WHERE {}",
                        d.table(),
                        conds.join(" OR ")
                    ))
                    .fetch_one(d.pool())
                    .await
                    .map_err(|e| e.to_string())
                }
            }
            Err(e) => Err(e.to_string()),
        };
        pre.push(match &data_loss {
            Ok(n) => ok(
                "data_loss_warning",
                format!(
                    "{n} row(s) hold insulin_short or insulin_long; the downgrade drops those values. Acknowledge by typing {n} (acknowledge_data_loss_rows)"
                ),
            ),
            Err(e) => fail("data_loss_warning", format!("cannot count the rows the downgrade would drop: {e}")),
        });
        let writer_now = match s.writer_cluster.as_ref() {
            Ok(c) => c.deployment_replicas(&s.settings.writer.deployment).await.ok().map(|r| r.desired),
            Err(_) => None,
        };
        let flag_now = s.flags.read().await.ok().and_then(|r| r.raw);
        let baseline = match s.prometheus.as_ref() {
            Ok(p) => p.scalar(&s.settings.rollback.smoke_baseline_query).await.ok(),
            Err(_) => None,
        };
        let memory = Memory {
            writer_replicas: None,
            flag_before: None,
            from_revision: from.clone(),
            target_revision: target.clone().unwrap_or_default(),
            baseline_rate: baseline,
            data_loss_rows: *data_loss.as_ref().unwrap_or(&0),
            smoke_entry_id: None,
        };
        let steps = steps::describe(s, &memory, writer_now, flag_now.as_deref(), restore_data);
        let ready = pre.iter().all(|p| p.passed);
        Ok(Survey {
            plan: RollbackPlan {
                environment: s.settings.environment.clone(),
                from_revision: from,
                target_revision: target,
                data_loss_rows: data_loss.ok(),
                preconditions: pre,
                steps,
                ready,
                active_run: active,
                require_approval: s.settings.rollback.require_approval,
            },
            memory,
        })
    }

    async fn backup_check(&self) -> Precondition {
        let rb = &self.state.settings.rollback;
        if !rb.backup_status_argv.is_empty() {
            let argv = steps::substitute(&rb.backup_status_argv, self.state, &Memory::default());
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).kill_on_drop(true);
            if let Some(dir) = &rb.working_dir {
                cmd.current_dir(dir);
            }
            return match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
                Ok(Ok(out)) if out.status.success() => {
                    ok("backup_fresh", format!("`{}` reports a fresh backup", steps::shown(&argv, self.state)))
                }
                Ok(Ok(out)) => fail(
                    "backup_fresh",
                    format!(
                        "`{}` failed ({}): {}",
                        steps::shown(&argv, self.state),
                        out.status,
                        steps::redact(String::from_utf8_lossy(&out.stderr).trim(), self.state)
                    ),
                ),
                Ok(Err(e)) => fail("backup_fresh", format!("cannot run {}: {e}", argv[0])),
                Err(_) => fail("backup_fresh", "the backup status command did not finish within 30 s".into()),
            };
        }
        let Some(file) = &rb.backup_file else {
            return fail(
                "backup_fresh",
                "no backup is configured (rollback.backup_file or rollback.backup_status_argv)".into(),
            );
        };
        match std::fs::metadata(file).and_then(|m| m.modified()) {
            Ok(t) => {
                let age = std::time::SystemTime::now().duration_since(t).unwrap_or_default();
                let hours = age.as_secs_f64() / 3600.0;
                if age <= Duration::from_secs(rb.backup_max_age_hours * 3600) {
                    ok(
                        "backup_fresh",
                        format!("{} is {hours:.1} h old (limit {} h)", file.display(), rb.backup_max_age_hours),
                    )
                } else {
                    fail(
                        "backup_fresh",
                        format!("{} is {hours:.1} h old, older than {} h", file.display(), rb.backup_max_age_hours),
                    )
                }
            }
            Err(e) => fail("backup_fresh", format!("{}: {e}", file.display())),
        }
    }

    pub async fn run(&self, id: i64) -> Result<RunView, ApiError> {
        store::load(&self.state.state_db, id)
            .await
            .map_err(ApiError::Unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("there is no rollback run #{id}")))
    }

    pub async fn latest_run(&self) -> Result<Option<RunView>, ApiError> {
        match store::latest_run_id(&self.state.state_db).await.map_err(ApiError::Unavailable)? {
            Some(id) => Ok(Some(self.run(id).await?)),
            None => Ok(None),
        }
    }

    pub async fn deploys(&self, limit: i64) -> Result<Vec<DeployEntry>, ApiError> {
        deploys::list(&self.state.state_db, limit).await.map_err(ApiError::Unavailable)
    }

    pub async fn incident_markdown(&self, id: i64) -> Result<String, ApiError> {
        store::incident(&self.state.state_db, id)
            .await
            .map_err(ApiError::Unavailable)?
            .map(|(_, md)| md)
            .ok_or_else(|| ApiError::NotFound(format!("there is no incident #{id}")))
    }

    /// `POST /api/v1/rollback`.
    pub async fn start(
        &self,
        who: Option<&Identity>,
        body: Result<StartRollback, ApiError>,
        request_id: &str,
    ) -> Result<RunView, ApiError> {
        let result = self.try_start(who, body, request_id).await;
        self.recorded(who, "rollback.start", request_id, result).await
    }

    async fn try_start(
        &self,
        who: Option<&Identity>,
        body: Result<StartRollback, ApiError>,
        request_id: &str,
    ) -> Result<RunView, ApiError> {
        let s = self.state;
        let me = operator_for(who)?;
        let b = body?;
        let reason = check_reason(&b.reason, "a reason", true)?.unwrap_or_default();
        if b.confirm_environment != s.settings.environment {
            return Err(ApiError::BadRequest(format!(
                "the typed confirmation {:?} is not the environment's name; type {:?} exactly",
                b.confirm_environment, s.settings.environment
            )));
        }
        if b.restore_data && b.restore_confirmation.as_deref() != Some("RESTORE") {
            return Err(ApiError::BadRequest(
                "restoring data needs its own confirmation: restore_confirmation = \"RESTORE\"".into(),
            ));
        }
        let bypass = b
            .emergency_bypass_reason
            .as_deref()
            .map(|r| check_reason(r, "emergency_bypass_reason", true))
            .transpose()?
            .flatten();
        // A double click, or a second operator: the run already going is the answer.
        if let Some(id) = store::active_run_id(&s.state_db).await.map_err(ApiError::Unavailable)? {
            return Ok(RunView { joined: true, ..self.run(id).await? });
        }
        let survey = self.survey(b.restore_data).await?;
        let failed: Vec<&Precondition> = survey.plan.preconditions.iter().filter(|p| !p.passed).collect();
        if !failed.is_empty() {
            return Err(ApiError::Conflict {
                code: "precondition_failed",
                message: format!(
                    "a precondition fails: {}",
                    failed.iter().map(|p| format!("{}: {}", p.name, p.detail)).collect::<Vec<_>>().join("; ")
                ),
                details: serde_json::to_value(&survey.plan.preconditions).ok(),
            });
        }
        // Writers add split rows until step 1 stops them, so the count may have grown a little
        // since the operator saw it; it may not have shrunk, nor grown by more than 1 % (10 rows).
        let now_rows = survey.plan.data_loss_rows.unwrap_or_default();
        let ack = b.acknowledge_data_loss_rows;
        if ack < 0 || now_rows < ack || now_rows > ack + (ack / 100).max(10) {
            return Err(ApiError::Conflict {
                code: "data_loss_not_acknowledged",
                message: format!(
                    "the downgrade drops the split values of {now_rows} row(s); acknowledge that number as shown in the plan (you sent {ack})"
                ),
                details: None,
            });
        }
        let initial =
            if s.settings.rollback.require_approval && bypass.is_none() { "awaiting_approval" } else { "running" };
        let plan_json = serde_json::to_value(&survey.plan).unwrap_or_default();
        let memory = serde_json::to_value(&survey.memory).unwrap_or_default();
        let mut tx = s.state_db.begin().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rollback_runs (actor, reason, environment, state, restore_data, bypass_reason, memory, plan)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (active) WHERE active DO NOTHING RETURNING id",
        )
        .bind(&me.user)
        .bind(&reason)
        .bind(&s.settings.environment)
        .bind(initial)
        .bind(b.restore_data)
        .bind(&bypass)
        .bind(&memory)
        .bind(&plan_json)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| ApiError::Unavailable(db_err(e)))?;
        let Some(id) = id else {
            // Another start won the race an instant ago.
            drop(tx);
            let id = store::active_run_id(&s.state_db)
                .await
                .map_err(ApiError::Unavailable)?
                .ok_or_else(|| ApiError::Failed("a run was started concurrently but could not be found".into()))?;
            return Ok(RunView { joined: true, ..self.run(id).await? });
        };
        for (i, (name, title)) in STEPS.iter().enumerate() {
            let state = if *name == "restore_data" && !b.restore_data { "not_chosen" } else { "pending" };
            sqlx::query("INSERT INTO rollback_steps (run_id, idx, name, title, state) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(i as i32 + 1)
                .bind(name)
                .bind(title)
                .bind(state)
                .execute(&mut *tx)
                .await
                .map_err(|e| ApiError::Unavailable(db_err(e)))?;
        }
        let detail = match (&bypass, initial) {
            (Some(r), _) => Some(format!("approval bypassed in an emergency: {r}")),
            (None, "awaiting_approval") => Some("waiting for a second operator's approval".into()),
            _ => None,
        };
        store::note(
            &mut tx,
            id,
            Note {
                actor: &me.user,
                role: me.role.as_str(),
                action: "rollback.start",
                before: survey.plan.from_revision.clone(),
                after: survey.plan.target_revision.clone(),
                reason: Some(reason),
                outcome: Outcome::Done,
                detail,
                request_id: Some(request_id),
            },
        )
        .await
        .map_err(ApiError::Unavailable)?;
        tx.commit().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
        if initial == "running" {
            spawn_drive(s.clone(), id);
        }
        self.run(id).await
    }

    /// `POST /api/v1/rollback/{id}/{action}`.
    pub async fn act(
        &self,
        who: Option<&Identity>,
        id: i64,
        action: RunAction,
        body: Result<RunActionBody, ApiError>,
        request_id: &str,
    ) -> Result<RunView, ApiError> {
        let result = self.try_act(who, id, action, body, request_id).await;
        self.recorded(who, &format!("rollback.{}", action.as_str()), request_id, result).await
    }

    async fn try_act(
        &self,
        who: Option<&Identity>,
        id: i64,
        action: RunAction,
        body: Result<RunActionBody, ApiError>,
        request_id: &str,
    ) -> Result<RunView, ApiError> {
        let s = self.state;
        let me = operator_for(who)?;
        let reason =
            body?.reason.map(|r| check_reason(&r, "the reason", action == RunAction::Skip)).transpose()?.flatten();
        if action == RunAction::Skip && reason.is_none() {
            return Err(ApiError::BadRequest("skipping a step needs a reason".into()));
        }
        let run = self.run(id).await?;
        let conflict = |m: String| ApiError::Conflict { code: "run_state", message: m, details: None };
        let note = |action: &'static str, before: Option<String>, after: Option<String>| Note {
            actor: &me.user,
            role: me.role.as_str(),
            action,
            before,
            after,
            reason: reason.clone(),
            outcome: Outcome::Done,
            detail: None,
            request_id: Some(request_id),
        };
        match action {
            RunAction::Approve => {
                if run.state != "awaiting_approval" {
                    return Err(conflict(format!("run #{id} is {}, not waiting for approval", run.state)));
                }
                if run.actor == me.user {
                    return Err(ApiError::Forbidden(format!(
                        "{} started run #{id}; a second operator must approve it (or start with an emergency bypass reason)",
                        me.user
                    )));
                }
                let mut tx = s.state_db.begin().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
                let done = sqlx::query("UPDATE rollback_runs SET state = 'running', approved_by = $2, updated_at = now() WHERE id = $1 AND state = 'awaiting_approval'")
                    .bind(id)
                    .bind(&me.user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| ApiError::Unavailable(db_err(e)))?;
                if done.rows_affected() != 1 {
                    return Err(conflict(format!("run #{id} changed state meanwhile")));
                }
                store::note(
                    &mut tx,
                    id,
                    note("rollback.approve", Some("awaiting_approval".into()), Some("running".into())),
                )
                .await
                .map_err(ApiError::Unavailable)?;
                tx.commit().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
                spawn_drive(s.clone(), id);
            }
            RunAction::Retry | RunAction::Skip => {
                if !matches!(run.state.as_str(), "stopped" | "interrupted") {
                    return Err(conflict(format!(
                        "run #{id} is {}; only a stopped or interrupted run can go on",
                        run.state
                    )));
                }
                let step = run.current_step().ok_or_else(|| conflict(format!("run #{id} has no step left")))?;
                let (step_state, label) = if action == RunAction::Skip {
                    ("skipped", "rollback.skip")
                } else {
                    ("pending", "rollback.retry")
                };
                store::set_step(
                    &s.state_db,
                    id,
                    step.index,
                    step_state,
                    None,
                    None,
                    reason.as_deref().filter(|_| action == RunAction::Skip),
                    None,
                    note(
                        label,
                        Some(format!("step {} {}: {}", step.index, step.name, step.state)),
                        Some(step_state.into()),
                    ),
                )
                .await
                .map_err(ApiError::Unavailable)?;
                store::set_run_state(
                    &s.state_db,
                    id,
                    "running",
                    None,
                    Note::executor(
                        "rollback.resume",
                        Some("running".into()),
                        Some(format!("from step {}", step.index)),
                        Outcome::Done,
                    ),
                )
                .await
                .map_err(ApiError::Unavailable)?;
                spawn_drive(s.clone(), id);
            }
            RunAction::Abort => {
                if !run.active() {
                    return Err(conflict(format!("run #{id} is {}; there is nothing to abort", run.state)));
                }
                store::set_run_state(
                    &s.state_db,
                    id,
                    "aborted",
                    None,
                    note("rollback.abort", Some(run.state.clone()), Some("aborted".into())),
                )
                .await
                .map_err(ApiError::Unavailable)?;
                let run = self.run(id).await?;
                incident::record(s, &run).await.map_err(ApiError::Unavailable)?;
            }
        }
        self.run(id).await
    }

    /// `POST /api/v1/deploys`.
    pub async fn record_deploy(
        &self,
        who: Option<&Identity>,
        body: Result<NewDeploy, ApiError>,
        request_id: &str,
    ) -> Result<DeployEntry, ApiError> {
        let result = async {
            let me = operator_for(who)?;
            let b = body?;
            for (name, v) in [("revision", &b.revision), ("previous_revision", &b.previous_revision)] {
                let v = v.trim();
                if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(ApiError::BadRequest(format!(
                        "{name} must be an Alembic revision id (letters, digits, _ and -), not {v:?}"
                    )));
                }
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
            .await
            .map_err(ApiError::Unavailable)?;
            super::audit::record(
                &mut *tx,
                &super::audit::NewEntry {
                    actor: me.user.clone(),
                    role: me.role.as_str().into(),
                    action: "deploy.record".into(),
                    target: "deploy journal".into(),
                    value_before: Some(entry.previous_revision.clone().unwrap_or_default()),
                    value_after: Some(entry.revision.clone()),
                    reason: note,
                    outcome: Outcome::Done,
                    outcome_detail: None,
                    request_id: Some(request_id.into()),
                },
            )
            .await
            .map_err(ApiError::Unavailable)?;
            tx.commit().await.map_err(|e| ApiError::Unavailable(db_err(e)))?;
            Ok(entry)
        }
        .await;
        self.recorded(who, "deploy.record", request_id, result).await
    }

    /// Passes `result` on; a refusal or failure goes to the audit trail first (what was done is
    /// recorded by the transition itself, in its own transaction).
    async fn recorded<T>(
        &self,
        who: Option<&Identity>,
        action: &str,
        request_id: &str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let Err(e) = &result {
            self.record_refusal(who, action, e, request_id).await;
        }
        result
    }

    async fn record_refusal(&self, who: Option<&Identity>, action: &str, e: &ApiError, request_id: &str) {
        let outcome = match e {
            ApiError::Unavailable(_) | ApiError::Failed(_) => Outcome::Failed,
            _ => Outcome::Refused,
        };
        let entry = super::audit::NewEntry {
            actor: who.map(|w| w.user.clone()).unwrap_or_else(|| "anonymous".into()),
            role: who.map(|w| w.role.as_str().to_string()).unwrap_or_else(|| "none".into()),
            action: action.into(),
            target: "rollback".into(),
            value_before: None,
            value_after: None,
            reason: None,
            outcome,
            outcome_detail: Some(e.to_string()),
            request_id: Some(request_id.into()),
        };
        if let Err(err) = super::audit::record(&self.state.state_db, &entry).await {
            tracing::error!(request_id, "cannot record a refused {action} in the audit trail: {err}");
        }
    }
}

fn operator_for(who: Option<&Identity>) -> Result<&Identity, ApiError> {
    operator(who).map_err(|e| match e {
        ApiError::Forbidden(m) => ApiError::Forbidden(m.replace("change the rollout", "run a rollback")),
        ApiError::Unauthenticated(m) => ApiError::Unauthenticated(m.replace("changing the rollout", "a rollback")),
        other => other,
    })
}

fn ok(name: &str, detail: String) -> Precondition {
    Precondition { name: name.into(), passed: true, detail }
}

fn fail(name: &str, detail: String) -> Precondition {
    Precondition { name: name.into(), passed: false, detail }
}

/// Persists memory for a run before a step acts.
struct RunMemory<'a> {
    db: &'a sqlx::PgPool,
    id: i64,
}

impl Remember for RunMemory<'_> {
    async fn remember(&self, memory: &Memory) -> Result<(), String> {
        let v = serde_json::to_value(memory).map_err(|e| e.to_string())?;
        sqlx::query("UPDATE rollback_runs SET memory = $2, updated_at = now() WHERE id = $1")
            .bind(self.id)
            .bind(v)
            .execute(self.db)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot persist the run's memory: {e}"))
    }
}

pub fn spawn_drive(state: AppState, id: i64) {
    tokio::spawn(async move {
        if let Err(e) = drive(&state, id).await {
            tracing::error!(run = id, "rollback executor: {e}");
        }
    });
}

/// Runs `f` while holding run `id`'s advisory lock, on a dedicated connection: the lock is
/// released when this process dies, which is how a restart knows a run was orphaned. Returns
/// None, running nothing, when someone else holds it.
async fn with_run_lock<T>(
    state: &AppState,
    id: i64,
    f: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<Option<T>, SourceError> {
    let mut conn = state.state_db.acquire().await.map_err(db_err)?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(store::LOCK_CLASS)
        .bind(id as i32)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    if !got {
        return Ok(None);
    }
    let result = f.await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(store::LOCK_CLASS)
        .bind(id as i32)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        conn.detach();
    }
    result.map(Some)
}

/// Drives run `id` step by step, if no other executor does.
async fn drive(state: &AppState, id: i64) -> Result<(), SourceError> {
    with_run_lock(state, id, drive_locked(state, id)).await.map(|_| ())
}

async fn drive_locked(state: &AppState, id: i64) -> Result<(), SourceError> {
    let db = &state.state_db;
    loop {
        let Some(run) = store::load(db, id).await? else { return Ok(()) };
        if run.state != "running" {
            return Ok(());
        }
        let mut memory: Memory = serde_json::from_value(run.memory.clone()).unwrap_or_default();
        let Some(step) = run.current_step().cloned() else {
            store::set_run_state(
                db,
                id,
                "done",
                None,
                Note::executor("rollback.done", Some("done".into()), None, Outcome::Done),
            )
            .await?;
            return Ok(());
        };
        let label = format!("step {} {}", step.index, step.name);
        store::set_step(
            db,
            id,
            step.index,
            "running",
            Some(""),
            None,
            None,
            None,
            Note::executor("rollback.step", Some(format!("{label}: running")), None, Outcome::Done),
        )
        .await?;
        let started = std::time::Instant::now();
        let limit = state.settings.rollback.step_timeout();
        let result = if step.name == "incident_record" {
            let run = store::load(db, id).await?.unwrap_or(run.clone());
            incident::record(state, &run)
                .await
                .map(|inc| format!("incident #{inc} recorded: GET /api/v1/incidents/{inc}.md"))
                .map_err(|e| steps::StepFailure { output: String::new(), error: e.to_string() })
        } else {
            match tokio::time::timeout(
                limit,
                steps::execute(state, &run, &mut memory, &step.name, &RunMemory { db, id }),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(steps::StepFailure {
                    output: String::new(),
                    error: format!("timed out after {} s (rollback.step_timeout_secs)", limit.as_secs()),
                }),
            }
        };
        let mem = serde_json::to_value(&memory).ok();
        match result {
            Ok(output) => {
                store::set_step(
                    db,
                    id,
                    step.index,
                    "done",
                    Some(&output),
                    None,
                    None,
                    mem.as_ref(),
                    Note::executor(
                        "rollback.step",
                        Some(format!("{label}: done in {:.1} s", started.elapsed().as_secs_f64())),
                        None,
                        Outcome::Done,
                    ),
                )
                .await?;
            }
            Err(f) => {
                store::set_step(
                    db,
                    id,
                    step.index,
                    "failed",
                    Some(&f.output),
                    Some(&f.error),
                    None,
                    mem.as_ref(),
                    Note::executor(
                        "rollback.step",
                        Some(format!("{label}: failed")),
                        Some(f.error.clone()),
                        Outcome::Failed,
                    ),
                )
                .await?;
                store::set_run_state(
                    db,
                    id,
                    "stopped",
                    None,
                    Note::executor(
                        "rollback.stopped",
                        Some("stopped".into()),
                        Some(format!("{label} failed: {}; retry it, skip it with a reason, or abort the run", f.error)),
                        Outcome::Failed,
                    ),
                )
                .await?;
                return Ok(());
            }
        }
    }
}

/// At start: a run that says running while nobody holds its lock lost its executor (the
/// process died). It is marked interrupted at the step it was on; nothing is re-run by itself.
pub async fn recover(state: &AppState) {
    let ids: Vec<i64> = match sqlx::query_scalar("SELECT id FROM rollback_runs WHERE state = 'running'")
        .fetch_all(&state.state_db)
        .await
    {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!("rollback recovery: {e}");
            return;
        }
    };
    for id in ids {
        if let Err(e) = recover_one(state, id).await {
            tracing::error!(run = id, "rollback recovery: {e}");
        }
    }
}

async fn recover_one(state: &AppState, id: i64) -> Result<(), SourceError> {
    // A run whose lock another replica holds is being driven there.
    with_run_lock(state, id, mark_interrupted(state, id)).await.map(|_| ())
}

async fn mark_interrupted(state: &AppState, id: i64) -> Result<(), SourceError> {
    let db = &state.state_db;
    let Some(run) = store::load(db, id).await? else { return Ok(()) };
    if run.state != "running" {
        return Ok(());
    }
    let at = run.current_step().map(|s| (s.index, s.name.clone(), s.state.clone()));
    if let Some((idx, name, st)) = &at {
        if st == "running" {
            store::set_step(
                db,
                id,
                *idx,
                "interrupted",
                None,
                Some("the dashboard stopped while this step was running; it may or may not have acted (retry checks the world first)"),
                None,
                None,
                Note::executor("rollback.step", Some(format!("step {idx} {name}: interrupted")), None, Outcome::Failed),
            )
            .await?;
        }
    }
    store::set_run_state(
        db,
        id,
        "interrupted",
        None,
        Note::executor(
            "rollback.interrupted",
            Some("interrupted".into()),
            Some(match &at {
                Some((i, n, _)) => format!("the dashboard restarted; the run was at step {i} {n}"),
                None => "the dashboard restarted".into(),
            }),
            Outcome::Failed,
        ),
    )
    .await
}
