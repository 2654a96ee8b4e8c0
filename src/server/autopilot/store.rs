//! Every SQL statement on the autopilot's tables. Each change of a plan is conditional on what
//! its caller saw (its state, its step), and is written with its audit entry in one transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::api::autopilot::{PlanState, PlanStep, PlanView};

use super::super::audit::{self, NewEntry};
use super::super::error::{db_err, Source, SourceError};

mod evaluations;

pub use evaluations::{check_history, evaluations, inconclusive_streaks, latest_of, record_evaluations};

fn malformed(detail: String) -> SourceError {
    SourceError::Malformed { system: Source::StateDatabase, detail }
}

/// A plan as the server keeps it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: i64,
    pub state: PlanState,
    pub actor: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: Vec<PlanStep>,
    pub current_step: i32,
    pub step_started_at: Option<DateTime<Utc>>,
    pub pending_step: Option<i32>,
    pub clean_since: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    pub dismissed: Vec<String>,
    pub guard_override: Option<String>,
    /// The flag's percentage when the plan started.
    pub start_percentage: Option<u8>,
    /// The starter's typed confirmation that the first step lowers the flag.
    pub lower_confirmed: Option<String>,
    /// The records doubled when the plan started (the doubled-dose check fails on any other).
    pub doubled_at_start: Vec<i64>,
    /// The flag's version as the plan last knew it.
    pub flag_version: Option<String>,
}

impl Plan {
    /// What `decide` reads.
    pub fn facts(&self) -> super::decide::PlanFacts {
        super::decide::PlanFacts {
            id: self.id,
            state: self.state,
            steps: self.steps.clone(),
            current_step: self.current_step,
            pending_step: self.pending_step,
            step_started_at: self.step_started_at,
            clean_since: self.clean_since,
            start_percentage: self.start_percentage,
            lower_confirmed: self.lower_confirmed.is_some(),
            flag_version: self.flag_version.clone(),
        }
    }

    pub fn current(&self) -> Option<&PlanStep> {
        usize::try_from(self.current_step).ok().and_then(|i| self.steps.get(i))
    }

    pub fn view(&self, now: DateTime<Utc>, watch_secs: i64) -> PlanView {
        let next_due = match (self.state, self.current(), self.step_started_at) {
            (PlanState::Running, Some(s), Some(started)) if (self.current_step as usize) + 1 < self.steps.len() => {
                let from = self.clean_since.unwrap_or(now).max(started);
                Some(from + chrono::Duration::seconds(s.bake_secs as i64))
            }
            _ => None,
        };
        PlanView {
            id: self.id,
            state: self.state,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            steps: self.steps.clone(),
            current_step: self.current_step,
            step_started_at: self.step_started_at,
            clean_since: self.clean_since,
            next_due,
            schedule: super::plan::schedule(&self.steps, self.current_step, self.step_started_at, now),
            pause_reason: self.pause_reason.clone(),
            dismissed: self.dismissed.clone(),
            guard_override: self.guard_override.clone(),
            watching: super::decide::watching(&self.facts(), now, watch_secs),
        }
    }
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: i64,
    state: String,
    actor: String,
    reason: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    steps: serde_json::Value,
    current_step: i32,
    step_started_at: Option<DateTime<Utc>>,
    pending_step: Option<i32>,
    clean_since: Option<DateTime<Utc>>,
    pause_reason: Option<String>,
    dismissed: serde_json::Value,
    guard_override: Option<String>,
    start_percentage: Option<i32>,
    lower_confirmed: Option<String>,
    doubled_at_start: Vec<i64>,
    flag_version: Option<String>,
}

const COLUMNS: &str = "id, state, actor, reason, created_at, finished_at, steps, current_step, step_started_at, \
                       pending_step, clean_since, pause_reason, dismissed, guard_override, start_percentage, \
                       lower_confirmed, doubled_at_start, flag_version";

fn plan(r: PlanRow) -> Result<Plan, SourceError> {
    let id = r.id;
    Ok(Plan {
        id,
        state: PlanState::parse(&r.state)
            .ok_or_else(|| malformed(format!("plan #{id} has the unknown state {:?}", r.state)))?,
        actor: r.actor,
        reason: r.reason,
        created_at: r.created_at,
        finished_at: r.finished_at,
        steps: serde_json::from_value(r.steps).map_err(|e| malformed(format!("plan #{id}'s steps: {e}")))?,
        current_step: r.current_step,
        step_started_at: r.step_started_at,
        pending_step: r.pending_step,
        clean_since: r.clean_since,
        pause_reason: r.pause_reason,
        dismissed: serde_json::from_value(r.dismissed).unwrap_or_default(),
        guard_override: r.guard_override,
        start_percentage: r.start_percentage.and_then(|p| u8::try_from(p).ok()),
        lower_confirmed: r.lower_confirmed,
        doubled_at_start: r.doubled_at_start,
        flag_version: r.flag_version,
    })
}

pub async fn load(db: &PgPool, id: i64) -> Result<Option<Plan>, SourceError> {
    let sql = format!("SELECT {COLUMNS} FROM autopilot_plans WHERE id = $1");
    let row: Option<PlanRow> = sqlx::query_as(&sql).bind(id).fetch_optional(db).await?;
    row.map(plan).transpose()
}

/// The active plan, or else the latest one.
pub async fn latest(db: &PgPool) -> Result<Option<Plan>, SourceError> {
    let sql = format!("SELECT {COLUMNS} FROM autopilot_plans ORDER BY active DESC, id DESC LIMIT 1");
    let row: Option<PlanRow> = sqlx::query_as(&sql).fetch_optional(db).await?;
    row.map(plan).transpose()
}

pub async fn active_id(db: &PgPool) -> Result<Option<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM autopilot_plans WHERE active").fetch_optional(db).await.map_err(db_err)
}

async fn note(tx: &mut Transaction<'_, Postgres>, id: i64, n: NewEntry) -> Result<(), SourceError> {
    audit::record(&mut **tx, &NewEntry { target: format!("autopilot plan #{id}"), plan_id: Some(id), ..n })
        .await
        .map(|_| ())
}

/// What a new plan starts with.
pub struct NewPlan<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub steps: &'a [PlanStep],
    pub guard_override: Option<&'a str>,
    pub start_percentage: Option<u8>,
    pub lower_confirmed: Option<&'a str>,
    pub doubled_at_start: &'a [i64],
    pub flag_version: Option<&'a str>,
}

/// A new running plan, unless one is active (None then: the partial unique index said no).
pub async fn create(db: &PgPool, new: NewPlan<'_>, n: NewEntry) -> Result<Option<i64>, SourceError> {
    let mut tx = db.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO autopilot_plans
           (actor, reason, state, steps, guard_override, start_percentage, lower_confirmed, doubled_at_start,
            flag_version)
         VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8)
         ON CONFLICT (active) WHERE active DO NOTHING RETURNING id",
    )
    .bind(new.actor)
    .bind(new.reason)
    .bind(serde_json::to_value(new.steps).unwrap_or_default())
    .bind(new.guard_override)
    .bind(new.start_percentage.map(i32::from))
    .bind(new.lower_confirmed)
    .bind(new.doubled_at_start)
    .bind(new.flag_version)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok(None) };
    note(&mut tx, id, n).await?;
    tx.commit().await?;
    Ok(Some(id))
}

type PlanUpdate<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Runs a conditional UPDATE of plan `id` and, when it changed the plan, writes its audit entry
/// in the same transaction. False (nothing written) when the condition no longer held.
async fn update_with_note(db: &PgPool, id: i64, update: PlanUpdate<'_>, n: NewEntry) -> Result<bool, SourceError> {
    let mut tx = db.begin().await?;
    let done = update.execute(&mut *tx).await?.rows_affected() == 1;
    if done {
        note(&mut tx, id, n).await?;
        tx.commit().await?;
    }
    Ok(done)
}

/// Moves plan `id` from `from` to `to` (a pause says why; a final state ends it). False when
/// the plan was not in `from` any more.
pub async fn transition(
    db: &PgPool,
    id: i64,
    from: PlanState,
    to: PlanState,
    pause_reason: Option<&str>,
    n: NewEntry,
) -> Result<bool, SourceError> {
    let update = sqlx::query(
        "UPDATE autopilot_plans SET state = $3, pause_reason = $4, updated_at = now(),
                clean_since = CASE WHEN $3 = 'running' THEN clean_since ELSE NULL END,
                finished_at = CASE WHEN $3 IN ('done', 'killed', 'aborted') THEN now() ELSE finished_at END
          WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(pause_reason);
    update_with_note(db, id, update, n).await
}

/// Says that step `next`'s flag write is under way (only from step `current`, running).
pub async fn begin_step(db: &PgPool, id: i64, current: i32, next: i32) -> Result<bool, SourceError> {
    let r = sqlx::query(
        "UPDATE autopilot_plans SET pending_step = $3, updated_at = now()
          WHERE id = $1 AND current_step = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(current)
    .bind(next)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

const FINISH_STEP: &str = "UPDATE autopilot_plans SET current_step = $2, pending_step = NULL, step_started_at = now(),
        clean_since = NULL, dismissed = '[]'::jsonb, updated_at = now(), flag_version = $3
  WHERE id = $1 AND pending_step = $2 AND active";

/// The flag reads step `next`'s percentage: the step begins its bake now (only for an active
/// plan: a kill that ended it stays the last word).
pub async fn finish_step(
    db: &PgPool,
    id: i64,
    next: i32,
    version: Option<&str>,
    n: NewEntry,
) -> Result<bool, SourceError> {
    update_with_note(db, id, sqlx::query(FINISH_STEP).bind(id).bind(next).bind(version), n).await
}

/// What a step's flag write gave: its audit entry once done, or why it did not happen.
pub enum StepWrite<E> {
    /// Written: the audit entry and the version the write left (None: not read back).
    Done(Box<NewEntry>, Option<String>),
    Failed(E),
}

/// Writes step `next` (announced by `begin_step`) while holding the plan's row, and finishes
/// it in the same transaction. A kill ends the plan with an UPDATE of that row, so it waits
/// for a step write under way and never lands between the write and its bookkeeping: after the
/// kill's transition no step is written (None: the plan is no longer running at step
/// `next - 1`, nothing was written).
pub async fn write_step<E>(
    db: &PgPool,
    id: i64,
    next: i32,
    write: impl std::future::Future<Output = StepWrite<E>>,
) -> Result<Option<Result<(), E>>, SourceError> {
    let mut tx = db.begin().await?;
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM autopilot_plans WHERE id = $1 AND state = 'running' AND pending_step = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(next)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(None);
    }
    match write.await {
        StepWrite::Done(n, version) => {
            sqlx::query(FINISH_STEP).bind(id).bind(next).bind(version).execute(&mut *tx).await?;
            note(&mut tx, id, *n).await?;
            tx.commit().await?;
            Ok(Some(Ok(())))
        }
        StepWrite::Failed(e) => Ok(Some(Err(e))),
    }
}

/// Ends the active plan, if any, because the rollout is being killed (`rollout::kill`): in
/// every active state, waiting at most a few seconds for a step write under way. Returns the
/// plan's id when one ended.
pub async fn end_for_kill(db: &PgPool, why: &str, n: NewEntry) -> Result<Option<i64>, SourceError> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE autopilot_plans SET state = 'killed', finished_at = now(), updated_at = now(), clean_since = NULL,
                pending_step = NULL, pause_reason = $1
          WHERE active RETURNING id",
    )
    .bind(why)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = id {
        note(&mut tx, id, n).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Ends plan `id` as `to` (killed or done) from whatever active state it is in.
pub async fn end_active(db: &PgPool, id: i64, to: PlanState, why: &str, n: NewEntry) -> Result<bool, SourceError> {
    let update = sqlx::query(
        "UPDATE autopilot_plans SET state = $2, pause_reason = $3, updated_at = now(), clean_since = NULL,
                pending_step = NULL, finished_at = now()
          WHERE id = $1 AND active",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(why);
    update_with_note(db, id, update, n).await
}

/// The state database's clock: plan times, bakes and windows are all read from it.
pub async fn now(db: &PgPool) -> Result<DateTime<Utc>, SourceError> {
    sqlx::query_scalar("SELECT now()").fetch_one(db).await.map_err(db_err)
}

/// The write of the pending step did not happen: forget it.
pub async fn drop_pending(db: &PgPool, id: i64) -> Result<(), SourceError> {
    sqlx::query("UPDATE autopilot_plans SET pending_step = NULL WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// After a round: every check passed (the clean streak goes on, or starts now) or not (it ends).
/// Only for a plan still running at the step the round saw: a pause meanwhile ended the streak.
pub async fn set_clean(db: &PgPool, id: i64, step: i32, clean: bool) -> Result<Option<DateTime<Utc>>, SourceError> {
    sqlx::query_scalar(
        "UPDATE autopilot_plans SET clean_since = CASE WHEN $2 THEN coalesce(clean_since, now()) ELSE NULL END
          WHERE id = $1 AND state = 'running' AND current_step = $3 RETURNING clean_since",
    )
    .bind(id)
    .bind(clean)
    .bind(step)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
    .map_err(db_err)
}

/// An operator dismissed `check` for the rest of the current step.
pub async fn dismiss(db: &PgPool, id: i64, step: i32, check: &str, n: NewEntry) -> Result<bool, SourceError> {
    let update = sqlx::query(
        "UPDATE autopilot_plans SET dismissed = dismissed || to_jsonb($3::text), updated_at = now()
          WHERE id = $1 AND current_step = $2 AND active AND NOT dismissed ? $3",
    )
    .bind(id)
    .bind(step)
    .bind(check);
    update_with_note(db, id, update, n).await
}
