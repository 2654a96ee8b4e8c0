//! The service layer: the one place both doors (REST handlers and server functions) call.
//! Every answer goes through a refresh-interval, single-flight cache, so many viewers cost the
//! backends no more than one; every backend answer is timed and updates the source's health.

use chrono::Utc;

use crate::api::adoption::Adoption;
use crate::api::alerts::{Alert, FlagObservation};
use crate::api::audit::AuditEntry;
use crate::api::records::{DoubledRecord, RecordSeries, RecordSummary};
use crate::api::window::Window;
use crate::api::StatusReport;

use super::error::{Source, SourceError};
use super::state::AppState;

pub mod shared;
pub mod sources;

pub use shared::{Health, Services, RENDER_KILOPIXELS};
pub use sources::{ask, diary_and_schema};

type Answer<T> = Result<T, SourceError>;

pub async fn status(state: &AppState) -> StatusReport {
    let mut report = state.services.status.get("status", || super::status::collect(state)).await;
    report.failing_since = state.services.health.snapshot();
    report
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

/// Legacy and split writes by app version over the range.
pub async fn client_versions(state: &AppState, range: Window) -> Answer<crate::api::versions::ClientVersions> {
    state
        .services
        .versions
        .get(&range.to_string(), || ask(state, Source::Prometheus, super::versions::client_versions(state, range)))
        .await
}

/// The patient days (`patient_days.rs`): each ended day counted once, the current day per
/// refresh; the crossover and the dose totals read them.
async fn patient_days(state: &AppState) -> Answer<std::sync::Arc<super::patient_days::PatientDays>> {
    state
        .services
        .patient_days
        .get("days", || {
            ask(state, Source::DiaryDatabase, async move {
                let (diary, schema) = diary_and_schema(state).await?;
                let span = state.settings.crossover.days.max(state.settings.dose_totals.span());
                let cache = &state.services.patient_day_cache;
                // Within the source timeout: past three fifths of it, the first fill goes on at
                // the next refresh.
                let budget = state.settings.source_timeout().mul_f64(0.6);
                let split = schema.has_split_columns();
                let days = super::patient_days::patient_days(diary, cache, split, span, budget).await?;
                Ok(std::sync::Arc::new(days))
            })
        })
        .await
}

/// Patients who cross over, per day (counted once for everyone); the examples (user ids) only
/// for a signed-in caller, computed apart.
pub async fn crossover(state: &AppState, signed_in: bool) -> Answer<crate::api::patients::Crossover> {
    let mut answer = super::crossover::crossover(&*patient_days(state).await?, &state.settings.crossover);
    if signed_in {
        let examples = state.services.crossover_examples.get("examples", || {
            ask(state, Source::DiaryDatabase, async move {
                let (diary, schema) = diary_and_schema(state).await?;
                let cache = &state.services.crossover_examples_kept;
                super::crossover::examples(diary, cache, schema.has_split_columns(), Utc::now()).await
            })
        });
        answer.examples = Some(examples.await?);
    }
    Ok(answer)
}

/// Each patient's daily total before and after their move; the examples (user ids) only for a
/// signed-in caller.
pub async fn dose_totals(state: &AppState, signed_in: bool) -> Answer<crate::api::patients::DoseTotals> {
    let days = patient_days(state).await?;
    let mut answer = state
        .services
        .dose_totals
        .get("totals", || async move { Ok(super::dose_totals::totals(&days, &state.settings.dose_totals)) })
        .await?;
    if !signed_in {
        answer.examples = None;
    }
    Ok(answer)
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
            let chart_events = crate::api::audit::chart_markers();
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
