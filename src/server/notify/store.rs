//! Every SQL statement on the notification tables (the outbox itself is the audit trail, read in
//! `audit::not_yet_sent`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::notify::{DeadLetter, DeliveryAttempt};

use super::super::error::{db_err, SourceError};

/// The receiver's first audit id to tell about: entries up to it existed before it was
/// configured. Registered on first sight, so a new receiver is not flooded with history.
pub async fn first_id(db: &PgPool, receiver: &str) -> Result<i64, SourceError> {
    sqlx::query_scalar(
        "WITH new AS (
           INSERT INTO notify_receivers (name, first_id)
           SELECT $1, coalesce((SELECT max(id) FROM audit_log), 0)
           ON CONFLICT (name) DO NOTHING RETURNING first_id)
         SELECT first_id FROM new UNION ALL SELECT first_id FROM notify_receivers WHERE name = $1 LIMIT 1",
    )
    .bind(receiver)
    .fetch_one(db)
    .await
    .map_err(db_err)
}

/// The receiver has been told about the entry (or skips it, or refused it): not due again.
pub async fn mark(db: &PgPool, receiver: &str, audit_id: i64, outcome: &str) -> Result<(), SourceError> {
    sqlx::query("INSERT INTO notify_sent (receiver, audit_id, outcome) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(receiver)
        .bind(audit_id)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(())
}

/// An attempt about to be recorded.
pub struct Attempt<'a> {
    pub receiver: &'a str,
    pub audit_id: Option<i64>,
    pub event: &'a str,
    pub severity: &'a str,
    pub ok: bool,
    pub status: Option<u16>,
    pub detail: Option<String>,
    pub millis: u128,
}

/// Records an attempt; returns its number for this receiver and entry (1 for the first).
pub async fn record_attempt(db: &PgPool, a: &Attempt<'_>) -> Result<i32, SourceError> {
    sqlx::query_scalar(
        "INSERT INTO notify_attempts (receiver, audit_id, event, severity, attempt, ok, status, detail, millis)
         SELECT $1, $2, $3, $4, 1 + (SELECT count(*) FROM notify_attempts
                                       WHERE receiver = $1 AND audit_id IS NOT DISTINCT FROM $2 AND event = $3), $5, $6, $7, $8
         RETURNING attempt",
    )
    .bind(a.receiver)
    .bind(a.audit_id)
    .bind(a.event)
    .bind(a.severity)
    .bind(a.ok)
    .bind(a.status.map(i32::from))
    .bind(&a.detail)
    .bind(i32::try_from(a.millis).unwrap_or(i32::MAX))
    .fetch_one(db)
    .await
    .map_err(db_err)
}

/// The receivers whose newest attempt was refused as ours (401, 403, 404): name, status, since
/// when they have refused (the first refusal after their last success) and how many times.
pub async fn refusing_receivers(db: &PgPool) -> Result<Vec<(String, i32, DateTime<Utc>, i64)>, SourceError> {
    sqlx::query_as(
        "WITH newest AS (
           SELECT DISTINCT ON (receiver) receiver, status FROM notify_attempts ORDER BY receiver, id DESC)
         SELECT n.receiver, n.status, min(a.at), count(*)
           FROM newest n
           JOIN notify_attempts a ON a.receiver = n.receiver
            AND a.id > coalesce((SELECT max(id) FROM notify_attempts o WHERE o.receiver = n.receiver AND o.ok), 0)
          WHERE n.status IN (401, 403, 404)
          GROUP BY n.receiver, n.status",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)
}

/// The newest attempts, every receiver.
pub async fn recent_attempts(db: &PgPool, limit: i64) -> Result<Vec<DeliveryAttempt>, SourceError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        at: DateTime<Utc>,
        receiver: String,
        audit_id: Option<i64>,
        event: String,
        severity: String,
        attempt: i32,
        ok: bool,
        status: Option<i32>,
        detail: Option<String>,
        millis: i32,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, receiver, audit_id, event, severity, attempt, ok, status, detail, millis
           FROM notify_attempts ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeliveryAttempt {
            id: r.id,
            at: r.at,
            receiver: r.receiver,
            audit_id: r.audit_id,
            event: r.event,
            severity: r.severity,
            attempt: r.attempt,
            ok: r.ok,
            status: r.status,
            detail: r.detail,
            millis: r.millis,
        })
        .collect())
}

/// A receiver's counts: (delivered, rejected, failing since, last error). An Alertmanager
/// receiver's deliveries are its posts that went through (`by_posts`), not audit entries.
pub async fn receiver_counts(
    db: &PgPool,
    receiver: &str,
    by_posts: bool,
) -> Result<(i64, i64, Option<DateTime<Utc>>, Option<String>), SourceError> {
    sqlx::query_as(
        "SELECT CASE WHEN $2 THEN (SELECT count(*) FROM notify_attempts WHERE receiver = $1 AND ok)
                     ELSE (SELECT count(*) FROM notify_sent WHERE receiver = $1 AND outcome = 'delivered') END,
                (SELECT count(*) FROM notify_sent WHERE receiver = $1 AND outcome = 'rejected'),
                (SELECT min(at) FROM notify_attempts WHERE receiver = $1 AND NOT ok
                    AND id > coalesce((SELECT max(id) FROM notify_attempts WHERE receiver = $1 AND ok), 0)),
                (SELECT detail FROM notify_attempts WHERE receiver = $1 AND NOT ok ORDER BY id DESC LIMIT 1)",
    )
    .bind(receiver)
    .bind(by_posts)
    .fetch_one(db)
    .await
    .map_err(db_err)
}

/// How many entries wait for the receiver.
pub async fn due_count(db: &PgPool, receiver: &str, after_id: i64, actions: &[&str]) -> Result<i64, SourceError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_log a
          WHERE a.id > $2 AND a.action = ANY($3) AND a.outcome <> 'refused'
            AND NOT EXISTS (SELECT 1 FROM notify_sent s WHERE s.receiver = $1 AND s.audit_id = a.id)",
    )
    .bind(receiver)
    .bind(after_id)
    .bind(actions)
    .fetch_one(db)
    .await
    .map_err(db_err)
}

/// Grafana: the region annotation opened for a rollback run, and whether it is closed.
pub async fn region(db: &PgPool, receiver: &str, run_id: i64) -> Result<Option<(i64, bool)>, SourceError> {
    sqlx::query_as("SELECT annotation_id, closed FROM grafana_regions WHERE receiver = $1 AND run_id = $2")
        .bind(receiver)
        .bind(run_id)
        .fetch_optional(db)
        .await
        .map_err(db_err)
}

pub async fn open_region(db: &PgPool, receiver: &str, run_id: i64, annotation_id: i64) -> Result<(), SourceError> {
    sqlx::query(
        "INSERT INTO grafana_regions (receiver, run_id, annotation_id) VALUES ($1, $2, $3)
         ON CONFLICT (receiver, run_id) DO UPDATE SET annotation_id = $3, closed = false",
    )
    .bind(receiver)
    .bind(run_id)
    .bind(annotation_id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn close_region(db: &PgPool, receiver: &str, run_id: i64) -> Result<(), SourceError> {
    sqlx::query("UPDATE grafana_regions SET closed = true WHERE receiver = $1 AND run_id = $2")
        .bind(receiver)
        .bind(run_id)
        .execute(db)
        .await?;
    Ok(())
}

/// An alert held firing in an Alertmanager receiver.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FiringAlert {
    pub key: String,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub starts_at: DateTime<Utc>,
}

/// The alerts held firing in `receiver`, oldest first.
pub async fn firing_alerts(db: &PgPool, receiver: &str) -> Result<Vec<FiringAlert>, SourceError> {
    sqlx::query_as(
        "SELECT key, labels, annotations, starts_at FROM notify_alerts WHERE receiver = $1 ORDER BY starts_at, key",
    )
    .bind(receiver)
    .fetch_all(db)
    .await
    .map_err(db_err)
}

/// After a delivered post: `hold` are firing (kept, first start kept), `gone` resolved.
pub async fn hold_alerts(db: &PgPool, receiver: &str, hold: &[FiringAlert], gone: &[&str]) -> Result<(), SourceError> {
    let mut tx = db.begin().await?;
    for a in hold {
        sqlx::query(
            "INSERT INTO notify_alerts (receiver, key, labels, annotations, starts_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (receiver, key) DO UPDATE SET annotations = $4, last_sent = now()",
        )
        .bind(receiver)
        .bind(&a.key)
        .bind(&a.labels)
        .bind(&a.annotations)
        .bind(a.starts_at)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM notify_alerts WHERE receiver = $1 AND key = ANY($2)")
        .bind(receiver)
        .bind(gone)
        .execute(&mut *tx)
        .await?;
    tx.commit().await.map_err(db_err)
}

/// The newest dead letters, with their last attempt's count and answer.
pub async fn dead_letters(db: &PgPool, limit: i64) -> Result<Vec<DeadLetter>, SourceError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        receiver: String,
        audit_id: i64,
        event: String,
        at: DateTime<Utc>,
        attempts: i32,
        last_error: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.receiver, s.audit_id, coalesce(a.event, l.action) AS event, s.at,
                coalesce(a.attempt, 0) AS attempts, a.detail AS last_error
           FROM notify_sent s
           JOIN audit_log l ON l.id = s.audit_id
           LEFT JOIN LATERAL (SELECT event, attempt, detail FROM notify_attempts t
                          WHERE t.receiver = s.receiver AND t.audit_id = s.audit_id ORDER BY t.id DESC LIMIT 1) a ON true
          WHERE s.outcome = 'dead' ORDER BY s.at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    ?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            receiver: r.receiver,
            audit_id: r.audit_id,
            event: r.event,
            at: r.at,
            attempts: r.attempts,
            last_error: r.last_error,
        })
        .collect())
}

/// How many dead letters `receiver` has.
pub async fn dead_count(db: &PgPool, receiver: &str) -> Result<i64, SourceError> {
    sqlx::query_scalar("SELECT count(*) FROM notify_sent WHERE receiver = $1 AND outcome = 'dead'")
        .bind(receiver)
        .fetch_one(db)
        .await
        .map_err(db_err)
}

/// A dead letter due again; false when there is no such dead letter.
pub async fn resend(db: &PgPool, receiver: &str, audit_id: i64) -> Result<bool, SourceError> {
    let done = sqlx::query("DELETE FROM notify_sent WHERE receiver = $1 AND audit_id = $2 AND outcome = 'dead'")
        .bind(receiver)
        .bind(audit_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
