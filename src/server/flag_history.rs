//! The flag's history as the dashboard observed it: every change (by the backend's version) is
//! recorded in the state database, whether it was made here or with kubectl.

use crate::api::audit::Action;
use chrono::{DateTime, Utc};

use crate::api::alerts::FlagObservation;

use super::error::SourceError;
use super::state::AppState;

/// Observations since `since`, oldest first, plus the last one before it (the value in force
/// at `since`), so a chart can draw the step line from the left edge.
pub async fn history(state: &AppState, since: DateTime<Utc>) -> Result<Vec<FlagObservation>, SourceError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        observed_at: DateTime<Utc>,
        raw_value: Option<String>,
        percentage: Option<i16>,
        resource_version: Option<String>,
        source: String,
        actor: Option<String>,
        reason: Option<String>,
    }
    // Each observation is joined with the dashboard change that produced it, if any: the newest
    // done flag change to that value shortly before it was observed.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.*, a.actor, a.reason FROM (
            (SELECT observed_at, raw_value, percentage, resource_version, source FROM flag_observations
              WHERE flag_key = $1 AND observed_at < $2 ORDER BY id DESC LIMIT 1)
            UNION ALL
            (SELECT observed_at, raw_value, percentage, resource_version, source FROM flag_observations
              WHERE flag_key = $1 AND observed_at >= $2 ORDER BY id LIMIT 5000)
         ) o
         LEFT JOIN LATERAL (
            SELECT actor, reason FROM audit_log a
             WHERE a.outcome = 'done' AND a.action = ANY($3) AND a.value_after = o.raw_value
               AND a.at <= o.observed_at + interval '5 seconds' AND a.at >= o.observed_at - interval '10 minutes'
             ORDER BY a.id DESC LIMIT 1
         ) a ON true
         ORDER BY o.observed_at",
    )
    .bind(&state.settings.flag.key)
    .bind(since)
    .bind(flag_writes())
    .fetch_all(&state.state_db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| FlagObservation {
            observed_at: r.observed_at,
            raw: r.raw_value,
            percentage: r.percentage.and_then(|p| u8::try_from(p).ok()),
            version: r.resource_version,
            source: r.source,
            changed_by: r.actor,
            reason: r.reason,
        })
        .collect())
}

/// What the observer saw last (the newest recorded observation, read once at start), kept
/// between its rounds (`background.rs` paces them, one every refresh interval).
#[derive(Default)]
pub struct FlagObserver {
    started: bool,
    last_version: Option<String>,
    last_raw: Option<Option<String>>,
}

impl FlagObserver {
    /// One round: reads the flag and records it if its version (a ConfigMap's resourceVersion,
    /// a LaunchDarkly flag's version) is new; a change not made here goes to the audit trail.
    pub async fn round(&mut self, state: &AppState) -> Result<(), String> {
        if !self.started {
            let last: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT resource_version, raw_value FROM flag_observations WHERE flag_key = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(&state.settings.flag.key)
            .fetch_optional(&state.state_db)
            .await
            .map_err(|e| SourceError::from(e).to_string())?;
            (self.last_version, self.last_raw) = match last {
                Some((v, r)) => (v, Some(r)),
                None => (None, None),
            };
            self.started = true;
        }
        let reading = match tokio::time::timeout(state.settings.source_timeout(), state.flags.read()).await {
            Ok(Ok(reading)) => reading,
            Ok(Err(e)) => return Err(format!("reading the flag: {e}")),
            Err(_) => return Err("reading the flag timed out".into()),
        };
        if reading.version.is_some() && reading.version == self.last_version {
            return Ok(());
        }
        let percentage = match &reading.parsed {
            Some(Ok(p)) => Some(p.get() as i16),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO flag_observations (flag_key, source, raw_value, percentage, resource_version)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&state.settings.flag.key)
        .bind(state.flags.source_name())
        .bind(&reading.raw)
        .bind(percentage)
        .bind(&reading.version)
        .execute(&state.state_db)
        .await
        .map_err(|e| format!("could not record the flag observation: {}", SourceError::from(e)))?;
        tracing::info!(raw = ?reading.raw, version = ?reading.version, "flag value observed");
        if let Some(before) = &self.last_raw {
            record_if_external(state, before.clone(), reading.raw.clone(), percentage).await;
        }
        self.last_version = reading.version;
        self.last_raw = Some(reading.raw);
        Ok(())
    }
}

/// A change the dashboard did not make (no done flag change to this value in the last ten
/// minutes) goes to the audit trail as made outside it.
async fn record_if_external(state: &AppState, before: Option<String>, after: Option<String>, percentage: Option<i16>) {
    if before == after {
        return;
    }
    // Ours: a done change to this text; or an unconfirmed write (its entry holds what was
    // written: the text, or "N %" where the store's text is a description) of this percentage.
    let percent = percentage.map(|p| format!("{p} %"));
    let ours: Result<bool, _> = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM audit_log WHERE outcome = 'done' AND action = ANY($4)
                          AND at >= now() - interval '10 minutes'
                          AND (value_after IS NOT DISTINCT FROM $1
                               OR (outcome_detail LIKE $2 AND value_after IS NOT DISTINCT FROM $3)))",
    )
    .bind(&after)
    .bind(format!("{}%", super::flags::UNCONFIRMED))
    .bind(&percent)
    .bind(flag_writes())
    .fetch_one(&state.state_db)
    .await;
    if ours.unwrap_or(true) {
        return;
    }
    let entry = super::audit::NewEntry::new(
        "outside the dashboard",
        "none",
        Action::FlagExternalChange,
        state.settings.flag.target(),
    )
    .values(before, after)
    .outcome(crate::api::audit::Outcome::Done, Some("noticed by polling the flag".into()));
    if let Err(e) = super::audit::record(&state.state_db, &entry).await {
        tracing::warn!("could not record an external flag change: {e}");
    }
}

/// The names of the dashboard's own flag writes, for the queries that find who changed the flag.
fn flag_writes() -> Vec<&'static str> {
    crate::api::audit::FLAG_WRITES.map(|a| a.as_str()).to_vec()
}
