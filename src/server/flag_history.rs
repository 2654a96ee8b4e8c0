//! The flag's history as the dashboard observed it: every change (by resourceVersion) is
//! recorded in the state database, whether it was made here or with kubectl.

use chrono::{DateTime, Utc};

use crate::api::alerts::FlagObservation;

use super::error::{from_sqlx, Source, SourceError};
use super::state::AppState;

/// Observations since `since`, oldest first, plus the last one before it (the value in force
/// at `since`), so a chart can draw the step line from the left edge.
pub async fn history(state: &AppState, since: DateTime<Utc>) -> Result<Vec<FlagObservation>, SourceError> {
    type Row = (DateTime<Utc>, Option<String>, Option<i16>, Option<String>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "(SELECT observed_at, raw_value, percentage, resource_version, source FROM flag_observations
           WHERE flag_key = $1 AND observed_at < $2 ORDER BY id DESC LIMIT 1)
         UNION ALL
         (SELECT observed_at, raw_value, percentage, resource_version, source FROM flag_observations
           WHERE flag_key = $1 AND observed_at >= $2 ORDER BY id LIMIT 5000)
         ORDER BY observed_at",
    )
    .bind(&state.settings.flag.key)
    .bind(since)
    .fetch_all(&state.state_db)
    .await
    .map_err(|e| from_sqlx(Source::StateDatabase, &e))?;
    Ok(rows
        .into_iter()
        .map(|(observed_at, raw, percentage, version, source)| FlagObservation {
            observed_at,
            raw,
            percentage: percentage.and_then(|p| u8::try_from(p).ok()),
            version,
            source,
        })
        .collect())
}

/// Polls the flag every refresh interval and records each new resourceVersion.
pub async fn observe_flag_forever(state: AppState) {
    let mut last_version: Option<String> = sqlx::query_scalar(
        "SELECT resource_version FROM flag_observations WHERE flag_key = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(&state.settings.flag.key)
    .fetch_optional(&state.state_db)
    .await
    .ok()
    .flatten();
    let mut tick = tokio::time::interval(state.settings.refresh_interval());
    loop {
        tick.tick().await;
        let Ok(Ok(reading)) = tokio::time::timeout(state.settings.source_timeout(), state.flags.read()).await else {
            continue;
        };
        if reading.version.is_some() && reading.version == last_version {
            continue;
        }
        let percentage = match &reading.parsed {
            Some(Ok(v)) => Some(v.percentage.get() as i16),
            _ => None,
        };
        let saved = sqlx::query(
            "INSERT INTO flag_observations (flag_key, source, raw_value, percentage, resource_version)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&state.settings.flag.key)
        .bind(state.flags.source_name())
        .bind(&reading.raw)
        .bind(percentage)
        .bind(&reading.version)
        .execute(&state.state_db)
        .await;
        match saved {
            Ok(_) => {
                tracing::info!(raw = ?reading.raw, version = ?reading.version, "flag value observed");
                last_version = reading.version;
            }
            Err(e) => tracing::warn!("could not record the flag observation: {e}"),
        }
    }
}
