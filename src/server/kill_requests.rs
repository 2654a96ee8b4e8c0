//! Kills asked for, until the flag reads 0 %. A kill whose write fails (Kubernetes unreachable,
//! LaunchDarkly down) is not forgotten: it stays pending, every autopilot round retries it
//! ([`retry`]), no raise of the flag is accepted while it is pending (`rollout::set_percentage`),
//! an Alertmanager condition holds while it is pending (`notify::alerting`), and the overview and
//! the autopilot page show it in red. Its first failure is a critical event to every receiver
//! (`flag.kill_failed`); its landing is one too (`flag.kill_retry`).

use crate::api::audit::Action;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::audit::Outcome;

use super::caller::Caller;
use super::error::{db_err, SourceError};
use super::state::AppState;

pub use crate::api::rollout::PendingKill;

/// Records that `actor` asks for a kill (before its write is tried); a kill already pending is
/// the same request (the audit trail keeps each attempt).
pub async fn ask(db: &PgPool, actor: &str, reason: Option<&str>) -> Result<i64, SourceError> {
    if let Some(k) = pending(db).await?.first() {
        return Ok(k.id);
    }
    sqlx::query_scalar("INSERT INTO kill_requests (actor, reason) VALUES ($1, $2) RETURNING id")
        .bind(actor)
        .bind(reason)
        .fetch_one(db)
        .await
        .map_err(db_err)
}

/// The flag reads 0 %: every pending kill has landed.
pub async fn landed(db: &PgPool) -> Result<u64, SourceError> {
    let r = sqlx::query("UPDATE kill_requests SET landed_at = now() WHERE landed_at IS NULL")
        .execute(db)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected())
}

/// An attempt at every pending kill failed with `error`.
pub async fn attempt_failed(db: &PgPool, error: &str) -> Result<(), SourceError> {
    sqlx::query(
        "UPDATE kill_requests SET attempts = attempts + 1, last_attempt_at = now(), last_error = $1
          WHERE landed_at IS NULL",
    )
    .bind(error)
    .execute(db)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Every kill that has not landed, oldest first.
pub async fn pending(db: &PgPool) -> Result<Vec<PendingKill>, SourceError> {
    type Row = (i64, DateTime<Utc>, String, Option<String>, i32, Option<DateTime<Utc>>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, requested_at, actor, reason, attempts, last_attempt_at, last_error
               FROM kill_requests WHERE landed_at IS NULL ORDER BY id",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|r| PendingKill {
            id: r.0,
            requested_at: r.1,
            actor: r.2,
            reason: r.3,
            attempts: r.4,
            last_attempt_at: r.5,
            last_error: r.6,
        })
        .collect())
}

/// Tries the pending kills again, one replica at a time: one write of 0 % through the kill
/// switch's own write, as the actor `kill-retry`. Its landing is audited (`flag.kill_retry`, a
/// critical event); its failures update the request, whose first failure was already told to
/// everyone.
pub async fn retry(state: &AppState) -> Result<(), SourceError> {
    if pending(&state.state_db).await?.is_empty() {
        return Ok(());
    }
    super::locks::with_lock(state, super::locks::Lock::KillRetry, retry_locked(state)).await.map(|_| ())
}

async fn retry_locked(state: &AppState) -> Result<(), SourceError> {
    let db = &state.state_db;
    let waiting = pending(db).await?;
    let Some(first) = waiting.first() else { return Ok(()) };
    let caller = Caller::system("kill-retry", format!("kill-retry-{}-{}", first.id, Utc::now().timestamp_micros()));
    let reason = format!(
        "the kill asked by {} at {} had not landed ({} attempt(s))",
        first.actor,
        first.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
        first.attempts + 1
    );
    match super::rollout::write_kill(state, &caller, &reason).await {
        Ok(done) => {
            landed(db).await?;
            let entry = caller
                .entry(Action::FlagKillRetry, state.settings.flag.target())
                .values(Some(done.before), Some(done.after))
                .reason(Some(reason))
                .outcome(Outcome::Done, Some(format!("{} pending kill(s) landed", waiting.len())));
            super::audit::record(db, &entry).await?;
            tracing::warn!("a pending kill landed: the flag is at 0 %");
        }
        Err(e) => {
            tracing::error!("a pending kill still cannot be written: {e}");
            attempt_failed(db, &e.to_string()).await?;
        }
    }
    Ok(())
}
