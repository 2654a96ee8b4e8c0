//! What the rollout does to patients' records (`[crossover]`).

use serde::Deserialize;

/// Patients who cross over between the legacy and the split path within a day.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CrossoverSettings {
    /// Days shown, the current one included.
    pub days: u32,
    /// The `crossover` check fails when more than this share of a day's active patients went
    /// back (a legacy record after a split one the same day).
    pub max_back_share: f64,
    /// A day with fewer active patients is too small to judge (inconclusive).
    pub min_patients: i64,
}

impl Default for CrossoverSettings {
    fn default() -> Self {
        CrossoverSettings { days: 14, max_back_share: 0.005, min_patients: 100 }
    }
}
