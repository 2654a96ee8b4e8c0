//! What the state database keeps, and for how long (`retention_days`, 90 by default). Every hour,
//! rows older than that go from the tables that grow with time: the autopilot's evaluations of
//! plans that have ended (a row per check per round), notification attempts, kill requests that
//! landed, and sessions as soon as they expire. Kept forever: the audit trail (append-only, by
//! trigger), flag observations (a row per change, and the rollout's start is read from them),
//! rollback runs and their incidents, the deploy journal and plans (small, and the record of what
//! was done), and `notify_sent` and `alert_hook_actions`, which are what stop an old notification
//! from being sent again or an old alert from acting twice. A rollback's archive of split values
//! (rows and whole-table rows) goes `retention_days` after its roll-forward put them back, never
//! before (until then it is the only copy of those doses); its header stays, marked purged.

use std::time::Duration;

use sqlx::PgPool;

use super::error::SourceError;

/// How often the tables are pruned.
pub const EVERY: Duration = Duration::from_secs(3600);

/// (table, statement): `$1` is the retention in days.
const PRUNES: [(&str, &str); 7] = [
    ("sessions", "DELETE FROM sessions WHERE expires_at < now()"),
    (
        "autopilot_evaluations",
        "DELETE FROM autopilot_evaluations e USING autopilot_plans p
          WHERE e.plan_id = p.id AND p.state NOT IN ('running', 'paused') AND e.at < now() - make_interval(days => $1)",
    ),
    ("notify_attempts", "DELETE FROM notify_attempts WHERE at < now() - make_interval(days => $1)"),
    ("kill_requests", "DELETE FROM kill_requests WHERE landed_at < now() - make_interval(days => $1)"),
    (
        "rollback_archives",
        "UPDATE rollback_archives SET purged_at = now()
          WHERE run_id > 0 AND purged_at IS NULL AND reapplied_at < now() - make_interval(days => $1)",
    ),
    (
        "rollback_archive_rows",
        "DELETE FROM rollback_archive_rows r USING rollback_archives a
          WHERE r.run_id = a.run_id AND a.purged_at IS NOT NULL",
    ),
    (
        "rollback_archive_whole",
        "DELETE FROM rollback_archive_whole r USING rollback_archives a
          WHERE r.run_id = a.run_id AND a.purged_at IS NOT NULL",
    ),
];

/// Deletes what is older than `days`; the rows deleted per table.
pub async fn prune(db: &PgPool, days: u32) -> Result<Vec<(&'static str, u64)>, SourceError> {
    let mut deleted = Vec::with_capacity(PRUNES.len());
    for (table, sql) in PRUNES {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") { q.bind(days as i32) } else { q };
        let done = q.execute(db).await?;
        deleted.push((table, done.rows_affected()));
    }
    Ok(deleted)
}

/// One round of pruning (`background.rs` paces it every `EVERY`).
pub async fn prune_round(db: &PgPool, days: u32) -> Result<(), String> {
    let deleted = prune(db, days).await.map_err(|e| format!("cannot prune now: {e}"))?;
    let gone: Vec<String> = deleted.iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{t}: {n}")).collect();
    if !gone.is_empty() {
        tracing::info!(retention_days = days, "pruned {}", gone.join(", "));
    }
    Ok(())
}
