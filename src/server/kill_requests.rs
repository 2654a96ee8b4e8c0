//! Kills asked for, until the flag reads 0 %. A kill whose write fails (Kubernetes unreachable,
//! LaunchDarkly down) is not forgotten: it stays pending, the kill retry tries it again
//! (`rollout::retry_kills`, paced by `background.rs`), no raise of the flag is accepted while it
//! is pending (`rollout::set_percentage`), a condition holds while it is pending (`conditions`
//! below, held as an Alertmanager alert by `notify::alerting`), and the overview and
//! the autopilot page show it in red. Its first failure is a critical event to every receiver
//! (`flag.kill_failed`); its landing is one too (`flag.kill_retry`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::audit::Action;

use super::conditions::Condition;
use super::config::Severity;
use super::error::{db_err, SourceError};

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
    let r = sqlx::query("UPDATE kill_requests SET landed_at = now() WHERE landed_at IS NULL").execute(db).await?;
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
    .await?;
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
    .await?;
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

/// The rollout's conditions: killed (the newest flag change was a kill), and a kill that has not
/// landed, which holds until it does.
pub async fn conditions(db: &PgPool) -> Result<Vec<Condition>, SourceError> {
    let mut out = Vec::new();
    if let Some(change) = super::audit::last_flag_change(db).await? {
        if [Action::FlagKill, Action::FlagKillRetry].map(Action::as_str).contains(&change.1.as_str()) {
            out.push(Condition::new(
                "RolloutKilled",
                Severity::Critical,
                format!("The rollout was killed by {}: the flag is at 0 %", change.0),
                "Every user writes the legacy dose until someone sets the percentage again.".into(),
            ));
        }
    }
    if let Some(k) = pending(db).await?.first() {
        out.push(
            Condition::new(
                "RolloutKillFailing",
                Severity::Critical,
                format!("A kill asked by {} has not landed: the rollout is still up", k.actor),
                format!(
                    "Asked at {}; {} attempt(s), retried every round; last error: {}. Set the flag to 0 by hand if \
                     this lasts.",
                    k.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    k.attempts,
                    k.last_error.as_deref().unwrap_or("none yet")
                ),
            )
            .label("kill", k.id),
        );
    }
    Ok(out)
}
