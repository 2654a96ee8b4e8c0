//! The rollout status: one value per outside system, each failing on its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything the overview shows. Served as JSON by `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub flag: FlagStatus,
    pub schema: SchemaStatus,
    pub writer: WriterStatus,
    pub metrics: MetricsStatus,
    pub records_24h: RecordsStatus,
    pub environment: String,
    pub generated_at: DateTime<Utc>,
    pub refresh_interval_secs: u64,
    /// Since when each failing source has been failing, by source key
    /// (`prometheus`, `diary_database`, `state_database`, `kubernetes`).
    #[serde(default)]
    pub failing_since: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// What works less well now and why, in sentences (empty: nothing). The state database down
    /// is one: kills still work and are journaled, the rest waits for it.
    #[serde(default)]
    pub degraded: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagStatus {
    pub key: String,
    pub percentage: Option<u8>,
    pub raw: Option<String>,
    pub source: String,
    pub version: Option<String>,
    /// What the flag's backend calls its version: `resourceVersion` (a ConfigMap), `version`
    /// (LaunchDarkly).
    pub version_field: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaStatus {
    pub insulin_short: Option<bool>,
    pub insulin_long: Option<bool>,
    pub alembic_revision: Option<String>,
    pub expected_head: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterStatus {
    pub deployment: String,
    pub replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsStatus {
    pub split_per_s: Option<f64>,
    pub legacy_per_s: Option<f64>,
    pub error: Option<String>,
}

/// The last 24 hours of `history_records`; see `api::records` for each counter's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordsStatus {
    pub total: Option<i64>,
    pub with_short: Option<i64>,
    pub with_long: Option<i64>,
    pub with_both: Option<i64>,
    pub legacy_only: Option<i64>,
    pub doubled: Option<i64>,
    pub empty: Option<i64>,
    pub error: Option<String>,
}
