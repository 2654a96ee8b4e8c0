//! The rollout status service: asks every outside system at once, each within its time limit,
//! and reports each one's answer or its failure on its own. Both the REST API and the
//! overview's server function call `collect`.

use chrono::Utc;

use crate::api::{
    FlagStatus, MetricsStatus, RecordsStatus, SchemaStatus, StatusReport, WriterStatus,
};

use super::error::{within, Source, SourceError};
use super::flags::FlagReading;
use super::state::AppState;

pub async fn collect(state: &AppState) -> StatusReport {
    let s = &state.settings;
    let limit = s.source_timeout();
    let (flag, schema_and_records, writer, metrics) = tokio::join!(
        within(Source::Kubernetes, limit, state.flags.read()),
        within(Source::DiaryDatabase, limit, schema_and_records(state)),
        within(Source::Kubernetes, limit, async {
            state
                .writer_cluster
                .as_ref()
                .map_err(Clone::clone)?
                .deployment_replicas(&s.writer.deployment)
                .await
        }),
        within(Source::Prometheus, limit, async {
            let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
            let (split, legacy) = tokio::join!(
                prom.scalar(&s.metrics.split_rate_query),
                prom.scalar(&s.metrics.legacy_rate_query)
            );
            Ok((split?, legacy?))
        }),
    );
    let (schema, records) = match schema_and_records {
        Ok((schema, records)) => (Ok(schema), records),
        Err(e) => (Err(e.clone()), Err(e)),
    };
    StatusReport {
        flag: flag_status(state, flag),
        schema: match schema {
            Ok(sc) => SchemaStatus {
                insulin_short: Some(sc.insulin_short),
                insulin_long: Some(sc.insulin_long),
                alembic_revision: sc.alembic_revision,
                expected_head: s.schema.expected_head.clone(),
                error: None,
            },
            Err(e) => SchemaStatus {
                insulin_short: None,
                insulin_long: None,
                alembic_revision: None,
                expected_head: s.schema.expected_head.clone(),
                error: Some(e.to_string()),
            },
        },
        writer: match writer {
            Ok(r) => WriterStatus {
                deployment: s.writer.deployment.clone(),
                replicas: Some(r.desired),
                ready_replicas: Some(r.ready),
                error: None,
            },
            Err(e) => WriterStatus {
                deployment: s.writer.deployment.clone(),
                replicas: None,
                ready_replicas: None,
                error: Some(e.to_string()),
            },
        },
        metrics: match metrics {
            Ok((split, legacy)) => MetricsStatus {
                split_per_s: Some(split),
                legacy_per_s: Some(legacy),
                error: None,
            },
            Err(e) => MetricsStatus {
                split_per_s: None,
                legacy_per_s: None,
                error: Some(e.to_string()),
            },
        },
        records_24h: match records {
            Ok(c) => RecordsStatus {
                total: Some(c.total),
                with_short: c.with_short,
                with_long: c.with_long,
                error: None,
            },
            Err(e) => RecordsStatus {
                total: None,
                with_short: None,
                with_long: None,
                error: Some(e.to_string()),
            },
        },
        environment: s.environment.clone(),
        generated_at: Utc::now(),
        refresh_interval_secs: s.refresh_interval_secs,
    }
}

type SchemaAndRecords = (
    super::records::SchemaState,
    Result<super::records::RecordCounts, SourceError>,
);

async fn schema_and_records(state: &AppState) -> Result<SchemaAndRecords, SourceError> {
    let diary = state.diary.as_ref().map_err(Clone::clone)?;
    let schema = diary.schema().await?;
    let records = diary.counts_last_hours(24, &schema).await;
    Ok((schema, records))
}

fn flag_status(state: &AppState, reading: Result<FlagReading, SourceError>) -> FlagStatus {
    let key = state.settings.flag.key.clone();
    let source = state.flags.source_name().to_string();
    match reading {
        Ok(r) => {
            let (percentage, error) = match &r.parsed {
                Some(Ok(v)) => (Some(v.percentage.get()), None),
                Some(Err(unknown)) => (None, Some(unknown.to_string())),
                None => (None, Some(format!("the ConfigMap has no key {key:?}"))),
            };
            FlagStatus {
                key,
                percentage,
                raw: r.raw,
                source,
                version: r.version,
                error,
            }
        }
        Err(e) => FlagStatus {
            key,
            percentage: None,
            raw: None,
            source,
            version: None,
            error: Some(e.to_string()),
        },
    }
}

/// Records every flag change the dashboard sees (by resourceVersion) in the state database,
/// whether it was made here or with kubectl.
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
        let Ok(Ok(reading)) =
            tokio::time::timeout(state.settings.source_timeout(), state.flags.read()).await
        else {
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
