//! Legacy and split writes by the app version that made them (the counters' version label):
//! which versions still write the legacy `dose`, and adoption by version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::adoption::Points;

/// One app version's writes over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientVersion {
    pub version: String,
    /// Legacy doses it wrote in the range (the counter's increase, rounded).
    pub legacy_writes: i64,
    pub split_writes: i64,
    /// legacy / (legacy + split) of its own writes.
    pub legacy_share: Option<f64>,
    /// Its part of every legacy write in the range.
    pub share_of_legacy: Option<f64>,
    /// The first and last moment in the range it wrote anything, to within the rate window the
    /// chart uses (the larger of 300 s and twice its step: 5 min at 24 h, 34 min at 7 d).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Matched by `client_versions.split_only`: it must not write legacy.
    pub split_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientVersions {
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    /// The label read (`client_version`).
    pub label: String,
    /// The split-only requirement (`>= 4.0.0`), when set.
    pub split_only: Option<String>,
    /// Sorted by legacy writes, most first (then by split writes).
    pub versions: Vec<ClientVersion>,
    pub legacy_writes: i64,
    pub split_writes: i64,
    /// Which versions most legacy writes come from ("82 % of legacy writes come from 3.1.4 and 3.1.5").
    pub blame: Option<String>,
    /// Split-only versions that wrote legacy doses in the range.
    pub violations: Vec<String>,
    /// The queries, exactly as run.
    pub queries: Vec<String>,
    pub step_secs: f64,
    /// Legacy writes per second by version (the chart's lines), most legacy first.
    pub legacy_per_s: Vec<(String, Points)>,
}
