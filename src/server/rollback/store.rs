//! Runs, steps and incidents in the state database. Every transition is one transaction that
//! also writes its audit entry, so the run's state and the audit trail never disagree.

use sqlx::{PgPool, Postgres, Transaction};

use crate::api::audit::Outcome;
use crate::api::rollback::{RunView, StepView};

use super::super::audit::{self, NewEntry};
use super::super::error::{from_sqlx, Source, SourceError};

pub(super) fn db_err(e: sqlx::Error) -> SourceError {
    from_sqlx(Source::StateDatabase, &e)
}

/// What an audit entry about a run says, besides the run.
pub(super) struct Note<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub request_id: Option<&'a str>,
}

impl<'a> Note<'a> {
    /// A transition the run's executor made (not a person).
    pub fn executor(action: &'a str, after: Option<String>, detail: Option<String>, outcome: Outcome) -> Note<'a> {
        Note {
            actor: "rollback-executor",
            role: "system",
            action,
            before: None,
            after,
            reason: None,
            outcome,
            detail,
            request_id: None,
        }
    }
}

pub(super) async fn note(tx: &mut Transaction<'_, Postgres>, run_id: i64, n: Note<'_>) -> Result<i64, SourceError> {
    audit::record(
        &mut **tx,
        &NewEntry {
            actor: n.actor.into(),
            role: n.role.into(),
            action: n.action.into(),
            target: format!("rollback run #{run_id}"),
            value_before: n.before,
            value_after: n.after,
            reason: n.reason,
            outcome: n.outcome,
            outcome_detail: n.detail,
            request_id: n.request_id.map(str::to_string),
        },
    )
    .await
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

pub(super) async fn load<'e>(db: impl sqlx::PgExecutor<'e> + Copy, id: i64) -> Result<Option<RunView>, SourceError> {
    let run: Option<RunRow> = sqlx::query_as(
        "SELECT r.id, r.state, r.actor, r.reason, r.environment, r.created_at, r.updated_at, r.finished_at,
                r.restore_data, r.approved_by, r.bypass_reason, r.memory, i.id AS incident_id
         FROM rollback_runs r LEFT JOIN incidents i ON i.run_id = r.id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .map_err(db_err)?;
    let Some(r) = run else { return Ok(None) };
    let steps: Vec<StepRow> = sqlx::query_as(
        "SELECT idx, name, title, state, attempts, started_at, finished_at, output, error, skip_reason
         FROM rollback_steps WHERE run_id = $1 ORDER BY idx",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let now = chrono::Utc::now();
    Ok(Some(RunView {
        id: r.id,
        state: r.state,
        actor: r.actor,
        reason: r.reason,
        environment: r.environment,
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
        restore_data: r.restore_data,
        approved_by: r.approved_by,
        bypass_reason: r.bypass_reason,
        memory: r.memory,
        incident_id: r.incident_id,
        joined: false,
        steps: steps
            .into_iter()
            .map(|s| StepView {
                index: s.idx as u32,
                elapsed_ms: s.started_at.map(|t0| (s.finished_at.unwrap_or(now) - t0).num_milliseconds()),
                name: s.name,
                title: s.title,
                state: s.state,
                attempts: s.attempts,
                started_at: s.started_at,
                finished_at: s.finished_at,
                output: s.output,
                error: s.error,
                skip_reason: s.skip_reason,
            })
            .collect(),
    }))
}

pub(super) async fn active_run_id(db: &PgPool) -> Result<Option<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM rollback_runs WHERE active").fetch_optional(db).await.map_err(db_err)
}

pub(super) async fn latest_run_id(db: &PgPool) -> Result<Option<i64>, SourceError> {
    sqlx::query_scalar("SELECT id FROM rollback_runs ORDER BY active DESC, id DESC LIMIT 1")
        .fetch_optional(db)
        .await
        .map_err(db_err)
}

/// Sets the run's state (and its memory, when given) with an audit entry, in one transaction.
pub(super) async fn set_run_state(
    db: &PgPool,
    id: i64,
    state: &str,
    memory: Option<&serde_json::Value>,
    n: Note<'_>,
) -> Result<(), SourceError> {
    let mut tx = db.begin().await.map_err(db_err)?;
    sqlx::query(
        "UPDATE rollback_runs SET state = $2, memory = COALESCE($3, memory), updated_at = now(),
                finished_at = CASE WHEN $2 IN ('done', 'aborted') THEN now() ELSE finished_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(memory)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    note(&mut tx, id, n).await?;
    tx.commit().await.map_err(db_err)
}

/// Moves one step to `state`, with its output and error, and records the transition.
#[allow(clippy::too_many_arguments)]
pub(super) async fn set_step(
    db: &PgPool,
    run_id: i64,
    idx: u32,
    state: &str,
    output: Option<&str>,
    error: Option<&str>,
    skip_reason: Option<&str>,
    memory: Option<&serde_json::Value>,
    n: Note<'_>,
) -> Result<(), SourceError> {
    let mut tx = db.begin().await.map_err(db_err)?;
    sqlx::query(
        "UPDATE rollback_steps SET state = $3,
                attempts = attempts + CASE WHEN $3 = 'running' THEN 1 ELSE 0 END,
                started_at = CASE WHEN $3 = 'running' THEN now() ELSE started_at END,
                finished_at = CASE WHEN $3 IN ('done', 'failed', 'skipped', 'interrupted') THEN now()
                                   WHEN $3 = 'running' THEN NULL ELSE finished_at END,
                output = COALESCE($4, output),
                error = CASE WHEN $3 IN ('running', 'done', 'pending') THEN NULL ELSE COALESCE($5, error) END,
                skip_reason = COALESCE($6, skip_reason)
         WHERE run_id = $1 AND idx = $2",
    )
    .bind(run_id)
    .bind(idx as i32)
    .bind(state)
    .bind(output)
    .bind(error)
    .bind(skip_reason)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE rollback_runs SET updated_at = now(), memory = COALESCE($2, memory) WHERE id = $1")
        .bind(run_id)
        .bind(memory)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    note(&mut tx, run_id, n).await?;
    tx.commit().await.map_err(db_err)
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

/// Advisory-lock key space for runs: whoever holds (class, run id) drives that run.
pub(super) const LOCK_CLASS: i32 = 0x524f_4c4c; // "ROLL"
