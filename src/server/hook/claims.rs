//! The hook's claims on alerts' actions (`alert_hook_actions`): every SQL statement on them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::super::error::SourceError;

/// Whose an alert's action is, as the claim found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This attempt's now.
    Taken,
    /// An earlier attempt's, done.
    Done,
    /// An earlier attempt's, still acting (within its lease).
    Held,
}

/// Claims an alert's action for the attempt `owner`: taken when no attempt claimed it before, or
/// when an earlier attempt's claim is not done and older than `lease` (that attempt was cut off or
/// its process died: this one takes over). A done claim is never taken again.
pub async fn claim(
    db: &PgPool,
    fingerprint: &str,
    starts_at: DateTime<Utc>,
    action: &str,
    lease: std::time::Duration,
    owner: &str,
) -> Result<Claimed, SourceError> {
    let taken: Option<i32> = sqlx::query_scalar(
        "INSERT INTO alert_hook_actions (fingerprint, starts_at, action, owner) VALUES ($1, $2, $3, $5)
         ON CONFLICT (fingerprint, starts_at, action) DO UPDATE SET claimed_at = now(), owner = $5
          WHERE NOT alert_hook_actions.done
            AND alert_hook_actions.claimed_at < now() - make_interval(secs => $4)
         RETURNING 1",
    )
    .bind(fingerprint)
    .bind(starts_at)
    .bind(action)
    .bind(lease.as_secs_f64())
    .bind(owner)
    .fetch_optional(db)
    .await?;
    if taken.is_some() {
        return Ok(Claimed::Taken);
    }
    let done: Option<bool> = sqlx::query_scalar(
        "SELECT done FROM alert_hook_actions WHERE fingerprint = $1 AND starts_at = $2 AND action = $3",
    )
    .bind(fingerprint)
    .bind(starts_at)
    .bind(action)
    .fetch_optional(db)
    .await?;
    Ok(if done.unwrap_or(false) { Claimed::Done } else { Claimed::Held })
}

/// The claimed action is done: no later delivery of the alert acts again. (Done by whichever
/// attempt: an attempt that outlived its lease and succeeded still settles the alert.)
pub async fn claim_done(
    db: &PgPool,
    fingerprint: &str,
    starts_at: DateTime<Utc>,
    action: &str,
) -> Result<(), SourceError> {
    sqlx::query("UPDATE alert_hook_actions SET done = true WHERE fingerprint = $1 AND starts_at = $2 AND action = $3")
        .bind(fingerprint)
        .bind(starts_at)
        .bind(action)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives back `owner`'s claim (its action failed, so a later delivery may try again). A claim
/// another attempt took over since, or one marked done, is left alone.
pub async fn forget(
    db: &PgPool,
    fingerprint: &str,
    starts_at: DateTime<Utc>,
    action: &str,
    owner: &str,
) -> Result<(), SourceError> {
    sqlx::query(
        "DELETE FROM alert_hook_actions
          WHERE fingerprint = $1 AND starts_at = $2 AND action = $3 AND owner = $4 AND NOT done",
    )
    .bind(fingerprint)
    .bind(starts_at)
    .bind(action)
    .bind(owner)
    .execute(db)
    .await?;
    Ok(())
}
