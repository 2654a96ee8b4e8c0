//! Rollout alerts from Prometheus, and the flag values the dashboard has observed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub name: String,
    /// `firing` or `pending`.
    pub state: String,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub active_at: Option<DateTime<Utc>>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One observed flag value (a change, by the backend's version), whoever made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagObservation {
    pub observed_at: DateTime<Utc>,
    pub raw: Option<String>,
    pub percentage: Option<u8>,
    pub version: Option<String>,
    pub source: String,
    /// Who made the change through the dashboard (None: made outside it, or not a change).
    #[serde(default)]
    pub changed_by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}
