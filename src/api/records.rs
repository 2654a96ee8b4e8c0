//! `history_records` aggregates as the API and the pages see them. The definitions:
//! - `total`: rows with created_at in the window (created_at >= start AND created_at < end)
//! - `with_short`: insulin_short IS NOT NULL
//! - `with_long`: insulin_long IS NOT NULL
//! - `with_both`: both NOT NULL, doubled rows included (the reports' category "both" leaves them out)
//! - `legacy_only`: dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL
//! - `doubled`: dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose (forbidden)
//! - `empty`: all three NULL
//!
//! The categories (`server::categories`) are exclusive; `with_*` are "has" counters.
//!
//! When the split columns do not exist (schema rolled back), the split counters are null and
//! `legacy_only` / `empty` count by `dose` alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordCounts {
    pub total: i64,
    pub with_short: Option<i64>,
    pub with_long: Option<i64>,
    pub with_both: Option<i64>,
    pub legacy_only: i64,
    pub doubled: Option<i64>,
    pub empty: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: RecordCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: RecordCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSeries {
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    pub step: String,
    pub buckets: Vec<RecordBucket>,
}

/// A record that breaks the guide's rule: ids and times only, never patient data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoubledRecord {
    pub id: i64,
    pub created_at: DateTime<Utc>,
}
