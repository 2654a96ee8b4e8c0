//! Runs, steps and incidents in the state database: every SQL statement on these tables lives
//! here. Every transition is one transaction that also writes its audit entry, so the run's
//! state and the audit trail never disagree. States are bound and read as their names
//! (`RunState::as_str`); the migration's CHECKs list the same names (a test compares them).

use sqlx::{PgPool, Postgres, Transaction};

use crate::api::audit::Outcome;
use crate::api::rollback::{Choices, RunState, RunView, StepState, StepView};

use super::super::audit::{self, NewEntry};
use super::super::error::{db_err, Source, SourceError};
pub use super::memory::Memory;

fn malformed(detail: String) -> SourceError {
    SourceError::Malformed { system: Source::StateDatabase, detail }
}

/// A run as the server works with it: typed states and a typed memory. Browsers and REST
/// clients get its [`RunView`].
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub state: RunState,
    pub actor: String,
    pub reason: String,
    pub environment: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub restore_data: bool,
    pub fill_dose: bool,
    pub approved_by: Option<String>,
    pub bypass_reason: Option<String>,
    pub memory: Memory,
    pub steps: Vec<StepView>,
    pub incident_id: Option<i64>,
}

impl Run {
    /// The step the run is at (the first one not passed).
    pub fn current_step(&self) -> Option<&StepView> {
        self.steps.iter().find(|s| !s.state.passed())
    }

    pub fn view(&self) -> RunView {
        RunView {
            id: self.id,
            state: self.state,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            environment: self.environment.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            restore_data: self.restore_data,
            fill_dose: self.fill_dose,
            approved_by: self.approved_by.clone(),
            bypass_reason: self.bypass_reason.clone(),
            memory: serde_json::to_value(&self.memory).unwrap_or_default(),
            steps: self.steps.clone(),
            incident_id: self.incident_id,
            joined: false,
        }
    }
}

/// An audit entry about a run: the store names the run as its target.
pub(super) type Note = NewEntry;

/// A transition the run's executor made (not a person).
pub(super) fn executor_note(
    action: crate::api::audit::Action,
    after: Option<String>,
    detail: Option<String>,
    outcome: Outcome,
) -> Note {
    NewEntry::new("rollback-executor", "system", action, "").values(None, after).outcome(outcome, detail)
}

async fn note(tx: &mut Transaction<'_, Postgres>, run_id: i64, n: Note) -> Result<i64, SourceError> {
    audit::record(&mut **tx, &NewEntry { target: format!("rollback run #{run_id}"), run_id: Some(run_id), ..n }).await
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    state: String,
    actor: String,
    reason: String,
    environment: String,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    restore_data: bool,
    fill_dose: bool,
    approved_by: Option<String>,
    bypass_reason: Option<String>,
    memory: serde_json::Value,
    incident_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct StepRow {
    idx: i32,
    name: String,
    title: String,
    state: String,
    attempts: i32,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    output: String,
    error: Option<String>,
    skip_reason: Option<String>,
}

pub(super) async fn load<'e>(db: impl sqlx::PgExecutor<'e> + Copy, id: i64) -> Result<Option<Run>, SourceError> {
    let run: Option<RunRow> = sqlx::query_as(
        "SELECT r.id, r.state, r.actor, r.reason, r.environment, r.created_at, r.updated_at, r.finished_at,
                r.restore_data, r.fill_dose, r.approved_by, r.bypass_reason, r.memory, i.id AS incident_id
         FROM rollback_runs r LEFT JOIN incidents i ON i.run_id = r.id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(r) = run else { return Ok(None) };
    let steps: Vec<StepRow> = sqlx::query_as(
        "SELECT idx, name, title, state, attempts, started_at, finished_at, output, error, skip_reason
         FROM rollback_steps WHERE run_id = $1 ORDER BY idx",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    let now = chrono::Utc::now();
    let steps = steps
        .into_iter()
        .map(|s| {
            Ok(StepView {
                index: s.idx as u32,
                elapsed_ms: s.started_at.map(|t0| (s.finished_at.unwrap_or(now) - t0).num_milliseconds()),
                state: StepState::parse(&s.state).ok_or_else(|| {
                    malformed(format!("run #{id} step {} has the unknown state {:?}", s.idx, s.state))
                })?,
                name: s.name,
                title: s.title,
                attempts: s.attempts,
                started_at: s.started_at,
                finished_at: s.finished_at,
                output: s.output,
                error: s.error,
                skip_reason: s.skip_reason,
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(Some(Run {
        id: r.id,
        state: RunState::parse(&r.state)
            .ok_or_else(|| malformed(format!("run #{id} has the unknown state {:?}", r.state)))?,
        memory: serde_json::from_value(r.memory)
            .map_err(|e| malformed(format!("run #{id} remembers something unreadable: {e}")))?,
        actor: r.actor,
        reason: r.reason,
        environment: r.environment,
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
        restore_data: r.restore_data,
        fill_dose: r.fill_dose,
        approved_by: r.approved_by,
        bypass_reason: r.bypass_reason,
        incident_id: r.incident_id,
        steps,
    }))
}

pub(super) async fn active_run_id(db: &PgPool) -> Result<Option<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM rollback_runs WHERE active").fetch_optional(db).await.map_err(db_err)
}

/// The active run and its state, if any (the rollout's guard asks).
pub async fn active_run(db: &PgPool) -> Result<Option<(i64, RunState)>, SourceError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, state FROM rollback_runs WHERE active").fetch_optional(db).await?;
    row.map(|(id, st)| {
        RunState::parse(&st)
            .map(|s| (id, s))
            .ok_or_else(|| malformed(format!("run #{id} has the unknown state {st:?}")))
    })
    .transpose()
}

pub(super) async fn latest_run_id(db: &PgPool) -> Result<Option<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM rollback_runs ORDER BY active DESC, id DESC LIMIT 1")
        .fetch_optional(db)
        .await
        .map_err(db_err)
}

/// The runs in `state` (recovery looks for running ones whose executor is gone).
pub(super) async fn run_ids_in(db: &PgPool, state: RunState) -> Result<Vec<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM rollback_runs WHERE state = $1")
        .bind(state.as_str())
        .fetch_all(db)
        .await
        .map_err(db_err)
}

/// A run to create, with its steps in the registry's order.
pub(super) struct NewRun<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub environment: &'a str,
    pub state: RunState,
    pub choices: Choices,
    pub bypass_reason: Option<&'a str>,
    pub memory: &'a Memory,
    pub plan: serde_json::Value,
    /// (name, title, initial state) of each step, in order.
    pub steps: Vec<(&'static str, &'static str, StepState)>,
}

/// Creates the run, its steps and the start's audit entry in one transaction. None when another
/// run is active (it won the race an instant ago): nothing is written.
pub(super) async fn create_run(db: &PgPool, new: NewRun<'_>, n: Note) -> Result<Option<i64>, SourceError> {
    let mut tx = db.begin().await?;
    let memory = serde_json::to_value(new.memory).map_err(|e| malformed(e.to_string()))?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rollback_runs (actor, reason, environment, state, restore_data, fill_dose, bypass_reason, memory, plan)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (active) WHERE active DO NOTHING RETURNING id",
    )
    .bind(new.actor)
    .bind(new.reason)
    .bind(new.environment)
    .bind(new.state.as_str())
    .bind(new.choices.restore_data)
    .bind(new.choices.fill_dose)
    .bind(new.bypass_reason)
    .bind(&memory)
    .bind(&new.plan)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok(None) };
    for (i, (name, title, state)) in new.steps.iter().enumerate() {
        sqlx::query("INSERT INTO rollback_steps (run_id, idx, name, title, state) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(i as i32 + 1)
            .bind(name)
            .bind(title)
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
    }
    note(&mut tx, id, n).await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Moves the run from `from` to `to` (and records who approved, when given) with an audit
/// entry, in one transaction. False, writing nothing, when the run is no longer in `from`.
pub(super) async fn transition(
    db: &PgPool,
    id: i64,
    from: RunState,
    to: RunState,
    approved_by: Option<&str>,
    n: Note,
) -> Result<bool, SourceError> {
    let mut tx = db.begin().await?;
    if !transition_in(&mut tx, id, from, to, approved_by, n).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

async fn transition_in(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    from: RunState,
    to: RunState,
    approved_by: Option<&str>,
    n: Note,
) -> Result<bool, SourceError> {
    let done = sqlx::query(
        "UPDATE rollback_runs SET state = $3, approved_by = COALESCE($4, approved_by), updated_at = now(),
                finished_at = CASE WHEN $5 THEN now() ELSE finished_at END
         WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(approved_by)
    .bind(to.finished())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    note(tx, id, n).await?;
    Ok(true)
}

/// A person makes a stopped or interrupted run go on: its current step is reset (retry) or
/// skipped, and the run moves from `from` to `to`, both with their audit entries, in one
/// transaction. False, writing nothing, when the run is no longer in `from`.
pub(super) async fn resume(
    db: &PgPool,
    id: i64,
    (from, to): (RunState, RunState),
    (idx, u, step_note): (u32, StepUpdate<'_>, Note),
    run_note: Note,
) -> Result<bool, SourceError> {
    let mut tx = db.begin().await?;
    set_step_in(&mut tx, id, idx, u, step_note).await?;
    // Dropping the transaction undoes the step's reset when the run moved on meanwhile.
    if !transition_in(&mut tx, id, from, to, None, run_note).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// One step's move to a new state, with what it printed, why it failed or was skipped, and
/// what the run remembers after it.
pub(super) struct StepUpdate<'a> {
    pub state: StepState,
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub skip_reason: Option<&'a str>,
    pub memory: Option<&'a Memory>,
}

impl<'a> StepUpdate<'a> {
    pub fn to(state: StepState) -> Self {
        StepUpdate { state, output: None, error: None, skip_reason: None, memory: None }
    }
}

/// Moves one step and records the transition, in one transaction. A step that starts running
/// counts an attempt and clears its finish time; one that ends an attempt gets its finish time;
/// running, done and pending clear the error.
pub(super) async fn set_step(
    db: &PgPool,
    run_id: i64,
    idx: u32,
    u: StepUpdate<'_>,
    n: Note,
) -> Result<(), SourceError> {
    let mut tx = db.begin().await?;
    set_step_in(&mut tx, run_id, idx, u, n).await?;
    tx.commit().await.map_err(db_err)
}

async fn set_step_in(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
    idx: u32,
    u: StepUpdate<'_>,
    n: Note,
) -> Result<(), SourceError> {
    let starts = u.state == StepState::Running;
    let clears_error = matches!(u.state, StepState::Running | StepState::Done | StepState::Pending);
    let memory = u.memory.map(serde_json::to_value).transpose().map_err(|e| malformed(e.to_string()))?;
    sqlx::query(
        "UPDATE rollback_steps SET state = $3,
                attempts = attempts + CASE WHEN $7 THEN 1 ELSE 0 END,
                started_at = CASE WHEN $7 THEN now() ELSE started_at END,
                finished_at = CASE WHEN $8 THEN now() WHEN $7 THEN NULL ELSE finished_at END,
                output = COALESCE($4, output),
                error = CASE WHEN $9 THEN NULL ELSE COALESCE($5, error) END,
                skip_reason = COALESCE($6, skip_reason)
         WHERE run_id = $1 AND idx = $2",
    )
    .bind(run_id)
    .bind(idx as i32)
    .bind(u.state.as_str())
    .bind(u.output)
    .bind(u.error)
    .bind(u.skip_reason)
    .bind(starts)
    .bind(u.state.ends_attempt())
    .bind(clears_error)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE rollback_runs SET updated_at = now(), memory = COALESCE($2, memory) WHERE id = $1")
        .bind(run_id)
        .bind(memory)
        .execute(&mut **tx)
        .await?;
    note(tx, run_id, n).await?;
    Ok(())
}

/// Persists what the run remembers, before a step acts on it.
pub(super) async fn save_memory(db: &PgPool, run_id: i64, memory: &Memory) -> Result<(), SourceError> {
    let v = serde_json::to_value(memory).map_err(|e| malformed(e.to_string()))?;
    sqlx::query("UPDATE rollback_runs SET memory = $2, updated_at = now() WHERE id = $1")
        .bind(run_id)
        .bind(v)
        .execute(db)
        .await
        .map(|_| ())
        .map_err(db_err)
}

/// Records the incident of a finished or aborted run (once: a second call changes nothing).
pub(super) async fn save_incident(db: &PgPool, run_id: i64, title: &str, markdown: &str) -> Result<i64, SourceError> {
    sqlx::query_scalar(
        "INSERT INTO incidents (run_id, title, markdown) VALUES ($1, $2, $3)
         ON CONFLICT (run_id) DO UPDATE SET run_id = incidents.run_id RETURNING id",
    )
    .bind(run_id)
    .bind(title)
    .bind(markdown)
    .fetch_one(db)
    .await
    .map_err(db_err)
}

pub(super) async fn incident(db: &PgPool, id: i64) -> Result<Option<(String, String)>, SourceError> {
    sqlx::query_as("SELECT title, markdown FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(db_err)
}

/// The names the state database's CHECK constraints allow for `column` of `table`, read from
/// the catalog (the test that ties them to `RunState::ALL` and `StepState::ALL` uses it).
pub async fn allowed_states(db: &PgPool, table: &str) -> Result<Vec<String>, SourceError> {
    let def: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
         WHERE c.conrelid = $1::regclass AND c.contype = 'c' AND pg_get_constraintdef(c.oid) LIKE '%state%'",
    )
    .bind(table)
    .fetch_one(db)
    .await?;
    Ok(def.split('\'').skip(1).step_by(2).map(str::to_string).collect())
}
