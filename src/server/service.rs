//! The service layer: the one place both doors (REST handlers and server functions) call.
//! Every answer goes through a refresh-interval, single-flight cache, so many viewers cost the
//! backends no more than one; every backend answer is timed and updates the source's health.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::api::adoption::Adoption;
use crate::api::alerts::{Alert, FlagObservation};
use crate::api::audit::AuditEntry;
use crate::api::records::{DoubledRecord, RecordSeries, RecordSummary};
use crate::api::window::Window;
use crate::api::StatusReport;

use super::cache::SingleFlight;
use super::error::{Source, SourceError};
use super::own_metrics::OwnMetrics;
use super::state::AppState;

type Answer<T> = Result<T, SourceError>;

/// Since when each outside system has been failing (absent: it answered last time).
#[derive(Default)]
pub struct Health {
    failing_since: Mutex<BTreeMap<&'static str, DateTime<Utc>>>,
}

impl Health {
    pub fn record(&self, source: Source, ok: bool) {
        let mut g = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            g.remove(source.key());
        } else {
            g.entry(source.key()).or_insert_with(Utc::now);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, DateTime<Utc>> {
        let g = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

/// The report pixels drawn at once, in thousands: 6 megapixels, about 17 MB of RGB.
pub const RENDER_KILOPIXELS: u32 = 6000;

pub struct Services {
    pub metrics: Arc<OwnMetrics>,
    pub health: Health,
    /// The state database on the kill path (`breaker.rs`).
    pub state_db: super::breaker::Breaker,
    /// Reads per client (`http::client_reads`); None: not limited.
    pub client_reads: Option<super::http::client_reads::ClientReads>,
    /// Pixels being drawn, in thousands (`RENDER_KILOPIXELS` at most), off the async workers: a
    /// 2400 × 2400 PNG takes nearly all of it, a default-sized chart a twentieth.
    pub render: tokio::sync::Semaphore,
    status: SingleFlight<StatusReport>,
    summary: SingleFlight<Answer<RecordSummary>>,
    series: SingleFlight<Answer<RecordSeries>>,
    doubled: SingleFlight<Answer<Vec<DoubledRecord>>>,
    adoption: SingleFlight<Answer<Adoption>>,
    alerts: SingleFlight<Answer<Vec<Alert>>>,
    flag_history: SingleFlight<Answer<Vec<FlagObservation>>>,
    autopilot_events: SingleFlight<Answer<Vec<AuditEntry>>>,
    /// The rollback's dry run (it counts the diary's rows and runs the backup-status program):
    /// one survey a second at most, however many operators look.
    pub rollback_plan: SingleFlight<Result<crate::api::rollback::RollbackPlan, super::error::ApiError>>,
}

impl Services {
    pub fn new(refresh: Duration) -> Services {
        let metrics = Arc::new(OwnMetrics::default());
        let m = || metrics.clone();
        Services {
            status: SingleFlight::new("status", refresh, m()),
            summary: SingleFlight::new("records_summary", refresh, m()),
            series: SingleFlight::new("records_series", refresh, m()),
            doubled: SingleFlight::new("records_doubled", refresh, m()),
            adoption: SingleFlight::new("adoption", refresh, m()),
            alerts: SingleFlight::new("alerts", refresh, m()),
            flag_history: SingleFlight::new("flag_history", refresh, m()),
            autopilot_events: SingleFlight::new("autopilot_events", refresh, m()),
            rollback_plan: SingleFlight::new("rollback_plan", Duration::from_secs(1), m()),
            health: Health::default(),
            state_db: super::breaker::Breaker::new(Duration::from_secs(5)),
            render: tokio::sync::Semaphore::new(RENDER_KILOPIXELS as usize),
            client_reads: None,
            metrics,
        }
    }

    /// With reads per client limited (`client_reads_per_s`, 0: not limited).
    pub fn with_client_reads(self, per_s: u32, burst: u32) -> Services {
        Services { client_reads: super::http::client_reads::ClientReads::new(per_s, burst), ..self }
    }
}

/// Runs one backend question: bounded by the source time limit, timed, and its outcome recorded
/// in the source's health.
pub async fn ask<T>(state: &AppState, source: Source, fut: impl Future<Output = Answer<T>>) -> Answer<T> {
    let started = Instant::now();
    // Boxed: the backend futures are large, and callers join several of them.
    let answer = super::error::within(source, state.settings.source_timeout(), Box::pin(fut)).await;
    // Not configured, or still counting its history after a start: not a failing source.
    let ok = !matches!(&answer, Err(e) if e.system() == source
        && !matches!(e, SourceError::NotConfigured { .. } | SourceError::Counting { .. }));
    state.services.metrics.backend_query(source.key(), started.elapsed(), answer.is_ok());
    state.services.health.record(source, ok);
    answer
}

pub async fn status(state: &AppState) -> StatusReport {
    let mut report = state.services.status.get("status", || super::status::collect(state)).await;
    report.failing_since = state.services.health.snapshot();
    report
}

/// The diary database and its current schema, which decides which counters exist.
pub async fn diary_and_schema(
    state: &AppState,
) -> Answer<(&super::records::DiaryRecords, super::records::SchemaState)> {
    let diary = state.diary.as_ref().map_err(Clone::clone)?;
    let schema = diary.schema().await?;
    Ok((diary, schema))
}

pub async fn records_summary(state: &AppState, window: Window) -> Answer<RecordSummary> {
    state
        .services
        .summary
        .get(&window.to_string(), || {
            ask(state, Source::DiaryDatabase, async {
                let (diary, schema) = diary_and_schema(state).await?;
                diary.summary(window, &schema).await
            })
        })
        .await
}

pub async fn records_series(state: &AppState, range: Window, step: Window) -> Answer<RecordSeries> {
    state
        .services
        .series
        .get(&format!("{range}/{step}"), || {
            ask(state, Source::DiaryDatabase, async {
                let (diary, schema) = diary_and_schema(state).await?;
                diary.series(range, step, &schema).await
            })
        })
        .await
}

pub async fn doubled_records(state: &AppState, limit: i64) -> Answer<Vec<DoubledRecord>> {
    state
        .services
        .doubled
        .get(&limit.to_string(), || {
            ask(state, Source::DiaryDatabase, async {
                let (diary, schema) = diary_and_schema(state).await?;
                diary.doubled(limit, &schema).await
            })
        })
        .await
}

pub async fn adoption(state: &AppState, range: Window) -> Answer<Adoption> {
    state
        .services
        .adoption
        .get(&range.to_string(), || ask(state, Source::Prometheus, super::adoption::adoption(state, range)))
        .await
}

pub async fn alerts(state: &AppState) -> Answer<Vec<Alert>> {
    state.services.alerts.get("alerts", || ask(state, Source::Prometheus, super::alerts::rollout_alerts(state))).await
}

/// The autopilot's starts, pauses, dismissals, kills and ends over the range (the charts'
/// markers beside the flag changes), oldest first.
pub async fn autopilot_events(state: &AppState, range: Window) -> Answer<Vec<AuditEntry>> {
    state
        .services
        .autopilot_events
        .get(&range.to_string(), || async move {
            let since = Utc::now() - chrono::Duration::seconds(range.as_secs());
            let chart_events = super::autopilot::chart_events();
            ask(state, Source::StateDatabase, super::audit::done_since(&state.state_db, since, &chart_events, 200))
                .await
        })
        .await
}

pub async fn flag_history(state: &AppState, range: Window) -> Answer<Vec<FlagObservation>> {
    state
        .services
        .flag_history
        .get(&range.to_string(), || {
            let since = Utc::now() - chrono::Duration::seconds(range.as_secs());
            ask(state, Source::StateDatabase, super::flag_history::history(state, since))
        })
        .await
}
