//! Rehearsals in the state database (`rollback_rehearsals`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::rehearsal::{CategoryRoundTrip, RehearsalPart, RehearsalState, RehearsalView};

use super::super::super::error::SourceError;

type Row = (
    i64,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    bool,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    serde_json::Value,
    serde_json::Value,
);

const COLUMNS: &str =
    "id, requested_by, state, started_at, finished_at, fill_dose, backup_file, backup_at, failure, parts, categories";

fn view(r: Row) -> RehearsalView {
    let (id, requested_by, state, started_at, finished_at, fill_dose, backup_file, backup_at, failure, parts, cats) = r;
    RehearsalView {
        id,
        requested_by,
        state: RehearsalState::parse(&state).unwrap_or(RehearsalState::Failed),
        seconds: finished_at.map(|f| (f - started_at).num_milliseconds() as f64 / 1000.0),
        started_at,
        finished_at,
        fill_dose,
        backup_file,
        backup_at,
        failure,
        parts: serde_json::from_value(parts).unwrap_or_default(),
        categories: serde_json::from_value(cats).unwrap_or_default(),
    }
}

/// A new running rehearsal; None when one is running already (the partial unique index).
pub async fn insert(
    db: &PgPool,
    requested_by: &str,
    fill_dose: bool,
    backup: (&str, DateTime<Utc>),
) -> Result<Option<i64>, SourceError> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rollback_rehearsals (requested_by, fill_dose, backup_file, backup_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(requested_by)
    .bind(fill_dose)
    .bind(backup.0)
    .bind(backup.1)
    .fetch_optional(db)
    .await?;
    Ok(id)
}

/// The parts done so far (the page shows a rehearsal's progress).
pub async fn save_parts(db: &PgPool, id: i64, parts: &[RehearsalPart]) -> Result<(), SourceError> {
    sqlx::query("UPDATE rollback_rehearsals SET parts = $2 WHERE id = $1")
        .bind(id)
        .bind(serde_json::to_value(parts).unwrap_or_default())
        .execute(db)
        .await?;
    Ok(())
}

/// Its end: passed, or failed with why; the rows by category.
pub async fn finish(
    db: &PgPool,
    id: i64,
    failure: Option<&str>,
    parts: &[RehearsalPart],
    categories: &[CategoryRoundTrip],
) -> Result<(), SourceError> {
    let state = if failure.is_some() { RehearsalState::Failed } else { RehearsalState::Passed };
    sqlx::query(
        "UPDATE rollback_rehearsals SET state = $2, failure = $3, parts = $4, categories = $5, finished_at = now()
          WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(failure)
    .bind(serde_json::to_value(parts).unwrap_or_default())
    .bind(serde_json::to_value(categories).unwrap_or_default())
    .execute(db)
    .await?;
    Ok(())
}

/// A running rehearsal's sign of life (every few seconds while it runs).
pub async fn heartbeat(db: &PgPool, id: i64) -> Result<(), SourceError> {
    sqlx::query("UPDATE rollback_rehearsals SET heartbeat_at = now() WHERE id = $1 AND state = 'running'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// How long a running rehearsal may go without a heartbeat before it counts as interrupted.
pub const STALE_SECS: i64 = 60;

/// Running rehearsals without a heartbeat for `STALE_SECS` (their dashboard stopped): failed.
pub async fn fail_stale(db: &PgPool) -> Result<u64, SourceError> {
    Ok(sqlx::query(
        "UPDATE rollback_rehearsals SET state = 'failed', finished_at = now(),
                failure = 'interrupted: the dashboard running it stopped (no heartbeat for a minute)'
          WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1)",
    )
    .bind(STALE_SECS as f64)
    .execute(db)
    .await?
    .rows_affected())
}

/// Ended rehearsals whose scratch database is not known to be gone.
pub async fn undropped(db: &PgPool) -> Result<Vec<i64>, SourceError> {
    Ok(sqlx::query_scalar("SELECT id FROM rollback_rehearsals WHERE state <> 'running' AND NOT scratch_dropped")
        .fetch_all(db)
        .await?)
}

pub async fn mark_dropped(db: &PgPool, id: i64) -> Result<(), SourceError> {
    sqlx::query("UPDATE rollback_rehearsals SET scratch_dropped = true WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// This installation's tag in its scratch databases' names (drawn once by the migration).
pub async fn installation_tag(db: &PgPool) -> Result<String, SourceError> {
    Ok(sqlx::query_scalar("SELECT tag FROM rollback_rehearsal_installation").fetch_one(db).await?)
}

/// The newest `n`, newest first.
pub async fn recent(db: &PgPool, n: i64) -> Result<Vec<RehearsalView>, SourceError> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM rollback_rehearsals ORDER BY id DESC LIMIT $1"))
            .bind(n)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(view).collect())
}

pub async fn get(db: &PgPool, id: i64) -> Result<Option<RehearsalView>, SourceError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM rollback_rehearsals WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(view))
}

/// The newest rehearsal that passed.
pub async fn last_passed(db: &PgPool) -> Result<Option<RehearsalView>, SourceError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollback_rehearsals WHERE state = 'passed' ORDER BY finished_at DESC LIMIT 1"
    ))
    .fetch_optional(db)
    .await?;
    Ok(row.map(view))
}

/// When the newest passing rehearsal ended whose backup was at most `backup_max_age_hours` old
/// when it began (a pass on a stale backup proves little about today's table): the autopilot's
/// demand reads it.
pub async fn last_passed_at(db: &PgPool, backup_max_age_hours: u64) -> Result<Option<DateTime<Utc>>, SourceError> {
    Ok(sqlx::query_scalar(
        "SELECT max(finished_at) FROM rollback_rehearsals
          WHERE state = 'passed' AND backup_at >= started_at - make_interval(hours => $1)",
    )
    .bind(i32::try_from(backup_max_age_hours).unwrap_or(i32::MAX))
    .fetch_one(db)
    .await?)
}
