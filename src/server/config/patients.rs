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

/// Each patient's daily insulin total before and after their move to the split path, and the
/// short-versus-legacy consistency (`[dose_totals]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DoseTotalsSettings {
    /// Whole days compared on each side of the move, at most.
    pub days_each_side: u32,
    /// A patient needs at least this many whole days on each side to be compared.
    pub min_days: u32,
    /// A short total that changed by this factor or more, up or down, counts as changed. 1.5
    /// finds a halved total 98 % of the time while an unchanged patient is flagged 0.55 % of the
    /// time, measured by simulation (README, "Dose totals per patient"); at 2 a halved total
    /// sits on the edge and noise hides it half the time.
    pub factor: f64,
    /// The `dose_totals` check fails when more than this share of the patients compared changed.
    pub max_changed_share: f64,
    /// Fewer patients with days on both sides is inconclusive.
    pub min_patients: i64,
    /// Consistency: a short dose within the patient's legacy range widened by this factor both
    /// ways is in scale.
    pub scale: f64,
}

impl Default for DoseTotalsSettings {
    fn default() -> Self {
        DoseTotalsSettings {
            days_each_side: 7,
            min_days: 3,
            factor: 1.5,
            max_changed_share: 0.04,
            min_patients: 100,
            scale: 2.0,
        }
    }
}

impl DoseTotalsSettings {
    /// The days the patient-day rollup must hold: a move and its days on both sides.
    pub fn span(&self) -> u32 {
        2 * self.days_each_side + 2
    }
}
