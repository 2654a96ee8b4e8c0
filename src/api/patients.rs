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

/// The patients whose daily short total (after/before their move to the split path) fell in a
/// range of ratios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioBucket {
    /// "¼ to ½", "0.8 to 1.25", …
    pub label: String,
    pub patients: i64,
}

/// A patient whose daily short total changed by the factor or more. Shown only to signed-in
/// users; never in notifications or logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalsExample {
    pub user_id: i64,
    /// Their first day with a split record.
    pub moved: NaiveDate,
    /// Mean daily legacy `dose` (the short dose) over the whole legacy days before the move.
    pub short_before: f64,
    /// Mean daily `insulin_short` and `insulin_long` over the whole split days after it.
    pub short_after: f64,
    pub long_after: f64,
    pub ratio: f64,
    pub days_before: u32,
    pub days_after: u32,
}

/// Among split records after the move, those whose short dose lies in the patient's own legacy
/// dose range before it (widened by `scale` both ways): a client writing the wrong unit into a
/// part falls outside. Counted by patient day; shown, not acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// Patient days on the split path, of patients with a legacy range to compare with.
    pub patient_days: i64,
    /// Of those, days whose every short dose lay in range.
    pub in_range: i64,
    pub scale: f64,
}

/// The patients who moved to the split path on one day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MoveDay {
    pub day: NaiveDate,
    pub moved: i64,
    pub compared: i64,
    pub changed: i64,
}

/// Each patient's daily insulin total before and after they moved to the split path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoseTotals {
    /// The first day counted (UTC) and the last whole one.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Patients seen on the legacy path in those days whose first split record followed.
    pub moved: i64,
    /// Of those, patients with at least `min_days` whole days on each side.
    pub both_sides: i64,
    /// Of those, patients whose short total changed by `factor` or more (halved or doubled
    /// with factor 2).
    pub changed: i64,
    /// Of those with both sides, patients who logged no long dose on any day after the move.
    pub no_long_after: i64,
    /// The distribution of after/before ratios.
    pub buckets: Vec<RatioBucket>,
    /// Per day patients moved (oldest first): how many, how many compared, how many changed.
    pub by_move_day: Vec<MoveDay>,
    pub median_ratio: Option<f64>,
    pub factor: f64,
    pub max_changed_share: f64,
    pub min_patients: i64,
    pub min_days: u32,
    pub days_each_side: u32,
    /// The most changed patients, most changed first; None for a caller not signed in.
    pub examples: Option<Vec<TotalsExample>>,
    pub consistency: Consistency,
    /// The statement counting one day, as run.
    pub query: String,
}
