//! What the rollout does to patients' records: patients who cross over between the legacy and
//! the split path within a day.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One day (UTC) of patients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CrossoverDay {
    pub day: NaiveDate,
    /// Patients with at least one dosed record that day.
    pub active: i64,
    /// Of those, patients with a split record (the share going back is of these).
    pub exposed: i64,
    /// Patients with both a legacy and a split record that day.
    pub crossing: i64,
    /// Of those, patients with a legacy record after a split record: they went back.
    pub back: i64,
    /// The day has ended (and settled); the current day is still counting.
    pub complete: bool,
}

/// A patient who went back: a legacy record after a split record on the same day. Shown only
/// to signed-in users; never in notifications or logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossoverExample {
    pub user_id: i64,
    pub first_split: DateTime<Utc>,
    pub last_legacy: DateTime<Utc>,
    /// The categories of their records that day (`short_only 3, legacy_only 1`).
    pub categories: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossover {
    /// Oldest first, the current day last.
    pub days: Vec<CrossoverDay>,
    /// The newest patients who went back today or yesterday; None for a caller not signed in.
    pub examples: Option<Vec<CrossoverExample>>,
    /// The autopilot's `crossover` check fails above this share of a day's active patients.
    pub max_back_share: f64,
    /// The statement counting one day, as run.
    pub query: String,
}
