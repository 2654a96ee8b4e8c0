//! What the shared state holds for the service layer: the caches (refresh-interval,
//! single-flight), each outside system's health, the dashboard's own metrics, the state
//! database's breaker and the limits on client reads and chart drawing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::adoption::Adoption;
use crate::api::alerts::{Alert, FlagObservation};
use crate::api::audit::AuditEntry;
use crate::api::records::{DoubledRecord, RecordSeries, RecordSummary};
use crate::api::StatusReport;

use super::super::cache::SingleFlight;
use super::super::error::{Source, SourceError};
use super::super::own_metrics::OwnMetrics;

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
    pub state_db: super::super::breaker::Breaker,
    /// Reads per client (`http::client_reads`); None: not limited.
    pub client_reads: Option<super::super::http::client_reads::ClientReads>,
    /// Pixels being drawn, in thousands (`RENDER_KILOPIXELS` at most), off the async workers: a
    /// 2400 × 2400 PNG takes nearly all of it, a default-sized chart a twentieth.
    pub render: tokio::sync::Semaphore,
    pub(super) status: SingleFlight<StatusReport>,
    pub(super) summary: SingleFlight<Answer<RecordSummary>>,
    pub(super) series: SingleFlight<Answer<RecordSeries>>,
    pub(super) doubled: SingleFlight<Answer<Vec<DoubledRecord>>>,
    pub(super) adoption: SingleFlight<Answer<Adoption>>,
    pub(super) versions: SingleFlight<Answer<crate::api::versions::ClientVersions>>,
    pub(super) crossover_examples: SingleFlight<Answer<Vec<crate::api::patients::CrossoverExample>>>,
    /// The examples of ended days, found once (`crossover.rs`).
    pub(super) crossover_examples_kept: super::super::crossover::ExampleCache,
    pub(super) patient_days: SingleFlight<Answer<std::sync::Arc<super::super::patient_days::PatientDays>>>,
    /// The ended patient days, each counted once (`patient_days.rs`).
    pub(super) patient_day_cache: super::super::patient_days::DayCache,
    pub(super) dose_totals: SingleFlight<Answer<crate::api::patients::DoseTotals>>,
    pub(super) alerts: SingleFlight<Answer<Vec<Alert>>>,
    pub(super) flag_history: SingleFlight<Answer<Vec<FlagObservation>>>,
    pub(super) autopilot_events: SingleFlight<Answer<Vec<AuditEntry>>>,
    /// The rollback's dry run (it counts the diary's rows and runs the backup-status program):
    /// one survey a second at most, however many operators look.
    pub rollback_plan: SingleFlight<Result<crate::api::rollback::RollbackPlan, super::super::error::ApiError>>,
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
            versions: SingleFlight::new("client_versions", refresh, m()),
            crossover_examples: SingleFlight::new("crossover_examples", refresh, m()),
            crossover_examples_kept: Default::default(),
            patient_days: SingleFlight::new("patient_days", refresh, m()),
            patient_day_cache: Default::default(),
            dose_totals: SingleFlight::new("dose_totals", refresh, m()),
            alerts: SingleFlight::new("alerts", refresh, m()),
            flag_history: SingleFlight::new("flag_history", refresh, m()),
            autopilot_events: SingleFlight::new("autopilot_events", refresh, m()),
            rollback_plan: SingleFlight::new("rollback_plan", Duration::from_secs(1), m()),
            health: Health::default(),
            state_db: super::super::breaker::Breaker::new(Duration::from_secs(5)),
            render: tokio::sync::Semaphore::new(RENDER_KILOPIXELS as usize),
            client_reads: None,
            metrics,
        }
    }

    /// With reads per client limited (`client_reads_per_s`, 0: not limited).
    pub fn with_client_reads(self, per_s: u32, burst: u32) -> Services {
        Services { client_reads: super::super::http::client_reads::ClientReads::new(per_s, burst), ..self }
    }
}
