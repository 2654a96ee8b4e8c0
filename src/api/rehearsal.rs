//! Rehearsals of the rollback (issue 33, item 5): the newest backup restored into a scratch
//! database, the plan's data steps run on it (archive, fill, downgrade, verify, the split
//! revision back, re-apply), each part timed, and the rows by category compared before and after.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

state_names! {
    /// A rehearsal's state (the state database's CHECK names the same).
    RehearsalState {
        Running = "running",
        Passed = "passed",
        Failed = "failed",
    }
}

/// `POST /api/v1/rollback/rehearsals`: rehearse now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRehearsal {
    /// Rehearse with the opt-in fill of `dose` from `insulin_short` (and its undo).
    #[serde(default)]
    pub fill_dose: bool,
}

/// One timed part of a rehearsal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalPart {
    pub name: String,
    pub seconds: f64,
    pub passed: bool,
    /// What it did or why it failed (command output masked, at most a few lines).
    pub detail: String,
}

/// One category's rows before the rehearsal's rollback and after its roll-forward, by the
/// category each row had before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryRoundTrip {
    pub category: String,
    pub rows: i64,
    /// The sum of the rows' hashes before (the archive's checksum, over every row of the category).
    pub checksum_before: String,
    /// The same sum after: equal to `checksum_before` when every row came back as it was.
    pub checksum_after: String,
    /// Rows back exactly as they were (id, user, time, dose, both parts).
    pub identical: i64,
    /// Doubled rows back as legacy rows with their dose (the roll-forward never brings a doubled
    /// dose back).
    pub kept_legacy: i64,
    /// Rows back with other values, and rows gone: both fail the rehearsal.
    pub changed: i64,
    pub gone: i64,
    /// Rows whose split values the guide's plan (downgrade, no archive) would lose.
    pub guide_plan_loses: i64,
}

/// A rehearsal as the page and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalView {
    pub id: i64,
    pub requested_by: String,
    pub state: RehearsalState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub fill_dose: bool,
    /// The backup's file name (not its path) and when it was taken (its modification time).
    pub backup_file: Option<String>,
    pub backup_at: Option<DateTime<Utc>>,
    pub failure: Option<String>,
    pub parts: Vec<RehearsalPart>,
    pub categories: Vec<CategoryRoundTrip>,
}

/// `GET /api/v1/rollback/rehearsals`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rehearsals {
    /// One line: "rehearsed 3 h ago on the backup of 04:10 UTC, 41 s, passed", or why it failed.
    pub summary: String,
    /// Why no rehearsal can start here (not configured, no backup), when none can.
    pub unavailable: Option<String>,
    pub latest: Option<RehearsalView>,
    pub last_passed: Option<RehearsalView>,
    /// The newest ten, newest first.
    pub recent: Vec<RehearsalView>,
    /// The autopilot's demand, when set: "above 25 %, a rehearsal that passed within 24 h".
    pub required_by_autopilot: Option<String>,
}
