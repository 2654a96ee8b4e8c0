//! The deploy journal: every Alembic revision of the diary database the dashboard observes,
//! and the ones operators enter. The rollback's target is the previous revision recorded for
//! the current one.

use sqlx::PgPool;

use crate::api::rollback::DeployEntry;

use super::super::error::db_err;
use super::super::error::SourceError;
use super::super::state::AppState;

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: chrono::DateTime<chrono::Utc>,
    revision: String,
    previous_revision: Option<String>,
    source: String,
    actor: String,
    note: Option<String>,
}

impl From<Row> for DeployEntry {
    fn from(r: Row) -> Self {
        DeployEntry {
            id: r.id,
            at: r.at,
            revision: r.revision,
            previous_revision: r.previous_revision,
            source: r.source,
            actor: r.actor,
            note: r.note,
        }
    }
}

pub async fn list(db: &PgPool, limit: i64) -> Result<Vec<DeployEntry>, SourceError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, revision, previous_revision, source, actor, note FROM deploy_journal ORDER BY at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    ?;
    Ok(rows.into_iter().map(DeployEntry::from).collect())
}

/// Whether the dashboard has seen the diary at `revision` (an observed journal entry).
pub async fn observed(db: &PgPool, revision: &str) -> Result<bool, SourceError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deploy_journal WHERE revision = $1 AND source = 'observed')")
        .bind(revision)
        .fetch_one(db)
        .await
        .map_err(db_err)
}

/// The revision before `revision`, from the newest journal entry that knows it.
pub async fn previous_of(db: &PgPool, revision: &str) -> Result<Option<String>, SourceError> {
    sqlx::query_scalar(
        "SELECT previous_revision FROM deploy_journal WHERE revision = $1 AND previous_revision IS NOT NULL
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(revision)
    .fetch_optional(db)
    .await
    .map_err(db_err)
}

pub async fn insert(
    db: impl sqlx::PgExecutor<'_>,
    revision: &str,
    previous: Option<&str>,
    source: &str,
    actor: &str,
    note: Option<&str>,
) -> Result<DeployEntry, SourceError> {
    let row: Row = sqlx::query_as(
        "INSERT INTO deploy_journal (revision, previous_revision, source, actor, note) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, at, revision, previous_revision, source, actor, note",
    )
    .bind(revision)
    .bind(previous)
    .bind(source)
    .bind(actor)
    .bind(note)
    .fetch_one(db)
    .await?;
    Ok(row.into())
}

/// Records the diary's revision when it differs from the newest journal entry.
pub async fn observe_once(state: &AppState) -> Result<(), SourceError> {
    let diary = state.diary.as_ref().map_err(Clone::clone)?;
    let Some(now) = diary.schema().await?.alembic_revision else { return Ok(()) };
    let last: Option<String> =
        sqlx::query_scalar("SELECT revision FROM deploy_journal ORDER BY at DESC, id DESC LIMIT 1")
            .fetch_optional(&state.state_db)
            .await?;
    if last.as_deref() != Some(now.as_str()) {
        // Back to the revision the journal lists before the last one: a rollback, not a deploy.
        // The previous of `now` is then what the journal already knows of it, not `last`.
        let rolled_back = match &last {
            Some(l) => previous_of(&state.state_db, l).await?.as_deref() == Some(now.as_str()),
            None => false,
        };
        let (previous, note) = match (&last, rolled_back) {
            (None, _) => (None, Some("first revision the dashboard saw; its previous revision is unknown".to_string())),
            (Some(l), true) => (previous_of(&state.state_db, &now).await?, Some(format!("rolled back from {l}"))),
            (Some(l), false) => (Some(l.clone()), None),
        };
        insert(&state.state_db, &now, previous.as_deref(), "observed", "rollout-dashboard", note.as_deref()).await?;
        tracing::info!(revision = %now, previous = ?previous, "deploy journal: revision change observed");
    }
    Ok(())
}
