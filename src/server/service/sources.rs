//! Asking the outside systems: every question bounded by the source time limit, timed, and its
//! outcome recorded in the source's health.

use std::future::Future;
use std::time::Instant;

use super::super::error::{Source, SourceError};
use super::super::state::AppState;

type Answer<T> = Result<T, SourceError>;

/// Runs one backend question: bounded by the source time limit, timed, and its outcome recorded
/// in the source's health.
pub async fn ask<T>(state: &AppState, source: Source, fut: impl Future<Output = Answer<T>>) -> Answer<T> {
    let started = Instant::now();
    // Boxed: the backend futures are large, and callers join several of them.
    let answer = super::super::error::within(source, state.settings.source_timeout(), Box::pin(fut)).await;
    // Not configured, or still counting its history after a start: not a failing source.
    let ok = !matches!(&answer, Err(e) if e.system() == source
        && !matches!(e, SourceError::NotConfigured { .. } | SourceError::Counting { .. }));
    state.services.metrics.backend_query(source.key(), started.elapsed(), answer.is_ok());
    state.services.health.record(source, ok);
    answer
}

/// The diary database and its current schema, which decides which counters exist.
pub async fn diary_and_schema(
    state: &AppState,
) -> Answer<(&super::super::records::DiaryRecords, super::super::records::SchemaState)> {
    let diary = state.diary.as_ref().map_err(Clone::clone)?;
    let schema = diary.schema().await?;
    Ok((diary, schema))
}
