//! The rollout status service: asks every outside system at once, each within its time limit,
//! and reports each one's answer or its failure on its own. Both the REST API and the
//! overview's server function call `collect`.

use chrono::Utc;

use crate::api::records::RecordSummary;
use crate::api::window::Window;
use crate::api::{FlagStatus, MetricsStatus, RecordsStatus, SchemaStatus, StatusReport, WriterStatus};

use super::error::{Source, SourceError};
use super::flags::FlagReading;
use super::service::sources::{ask, diary_and_schema};
use super::state::AppState;

pub async fn collect(state: &AppState) -> StatusReport {
    let s = &state.settings;
    let (flag, schema_and_records, writer, metrics, state_db) = tokio::join!(
        ask(state, state.flags.source(), state.flags.read()),
        ask(state, Source::DiaryDatabase, schema_and_records(state)),
        ask(state, Source::Kubernetes, async {
            state.writer_cluster.as_ref().map_err(Clone::clone)?.deployment_replicas(&s.writer.deployment).await
        }),
        ask(state, Source::Prometheus, async {
            let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
            let (split_q, legacy_q) = (s.metrics.split_rate("5m"), s.metrics.legacy_rate("5m"));
            let (split, legacy) = tokio::join!(prom.scalar(&split_q), prom.scalar(&legacy_q));
            Ok((split?, legacy?))
        }),
        ask(state, Source::StateDatabase, async {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&state.state_db)
                .await
                .map_err(|e| super::error::from_sqlx(Source::StateDatabase, &e))
        }),
    );
    let degraded = state_db
        .err()
        .map(|e| {
            format!(
                "{e}: the kill switch and the alert hook still kill (their audit entries wait in the journal); \
                 signing in, the audit trail, the autopilot, the rollback and notifications wait for it"
            )
        })
        .into_iter()
        .collect();
    let (schema, records) = match schema_and_records {
        Ok((schema, records)) => (Ok(schema), records),
        Err(e) => (Err(e.clone()), Err(e)),
    };
    StatusReport {
        flag: flag_status(state, flag),
        schema: schema_status(s.schema.expected_head.clone(), schema),
        writer: writer_status(s.writer.deployment.clone(), writer),
        metrics: match metrics {
            Ok((split, legacy)) => MetricsStatus { split_per_s: Some(split), legacy_per_s: Some(legacy), error: None },
            Err(e) => MetricsStatus { split_per_s: None, legacy_per_s: None, error: Some(e.to_string()) },
        },
        records_24h: records_status(records),
        environment: s.environment.clone(),
        generated_at: Utc::now(),
        refresh_interval_secs: s.refresh_interval_secs,
        failing_since: Default::default(),
        degraded,
    }
}

fn schema_status(
    expected_head: Option<String>,
    schema: Result<super::records::SchemaState, SourceError>,
) -> SchemaStatus {
    match schema {
        Ok(sc) => SchemaStatus {
            insulin_short: Some(sc.insulin_short),
            insulin_long: Some(sc.insulin_long),
            alembic_revision: sc.alembic_revision,
            expected_head,
            error: None,
        },
        Err(e) => SchemaStatus {
            insulin_short: None,
            insulin_long: None,
            alembic_revision: None,
            expected_head,
            error: Some(e.to_string()),
        },
    }
}

fn writer_status(deployment: String, writer: Result<super::cluster::Replicas, SourceError>) -> WriterStatus {
    match writer {
        Ok(r) => WriterStatus { deployment, replicas: Some(r.desired), ready_replicas: Some(r.ready), error: None },
        Err(e) => WriterStatus { deployment, replicas: None, ready_replicas: None, error: Some(e.to_string()) },
    }
}

fn records_status(records: Result<RecordSummary, SourceError>) -> RecordsStatus {
    match records {
        Ok(r) => {
            let c = r.counts;
            RecordsStatus {
                total: Some(c.total),
                with_short: c.with_short,
                with_long: c.with_long,
                with_both: c.with_both,
                legacy_only: Some(c.legacy_only),
                doubled: c.doubled,
                empty: Some(c.empty),
                error: None,
            }
        }
        Err(e) => RecordsStatus {
            total: None,
            with_short: None,
            with_long: None,
            with_both: None,
            legacy_only: None,
            doubled: None,
            empty: None,
            error: Some(e.to_string()),
        },
    }
}

type SchemaAndRecords = (super::records::SchemaState, Result<RecordSummary, SourceError>);

async fn schema_and_records(state: &AppState) -> Result<SchemaAndRecords, SourceError> {
    let (diary, schema) = diary_and_schema(state).await?;
    let day = Window::hours(24).expect("24h is a valid window");
    let records = diary.summary(day, &schema).await;
    Ok((schema, records))
}

fn flag_status(state: &AppState, reading: Result<FlagReading, SourceError>) -> FlagStatus {
    let key = state.settings.flag.key.clone();
    let source = state.flags.source_name().to_string();
    let version_field = state.flags.version_field().to_string();
    match reading {
        Ok(r) => {
            let (percentage, error) = match &r.parsed {
                Some(Ok(p)) => (Some(p.get()), None),
                Some(Err(unknown)) => (None, Some(unknown.to_string())),
                None => (None, Some(state.flags.absent())),
            };
            FlagStatus { key, percentage, raw: r.raw, source, version: r.version, version_field, error }
        }
        Err(e) => FlagStatus {
            key,
            percentage: None,
            raw: None,
            source,
            version: None,
            version_field,
            error: Some(e.to_string()),
        },
    }
}
