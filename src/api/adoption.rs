//! Adoption: split versus legacy usage from Prometheus, the legacy share and the guide's
//! 24-hour check ("after 24 hours the share of legacy_dose_used must stay below the target").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// (unix seconds, value) points; missing points are gaps, never zeros.
pub type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adoption {
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    pub step_secs: f64,
    /// Split doses saved per second.
    pub split_per_s: Points,
    /// Legacy doses used per second.
    pub legacy_per_s: Points,
    /// legacy / (legacy + split), where both are known and the sum is not zero.
    pub legacy_share: Points,
    /// The share over the last 5 minutes (null when there were no writes).
    pub current_share: Option<f64>,
    /// The target the share must stay below (fraction, 0.05 = 5 %).
    pub target: f64,
    pub check: DayCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Pass,
    Fail,
    TooEarly,
    Unknown,
}

/// The guide's 24-hour check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayCheck {
    pub outcome: CheckOutcome,
    pub rollout_started_at: Option<DateTime<Utc>>,
    pub elapsed_secs: Option<i64>,
    /// The legacy share over the last 24 hours, when the check applies.
    pub share_24h: Option<f64>,
    pub message: String,
}

/// legacy / (legacy + split) point by point, over timestamps both series have.
pub fn legacy_share(split: &Points, legacy: &Points) -> Points {
    let split: std::collections::BTreeMap<i64, f64> = split.iter().map(|(t, v)| ((*t * 1000.0) as i64, *v)).collect();
    legacy
        .iter()
        .filter_map(|(t, l)| {
            let s = split.get(&((*t * 1000.0) as i64))?;
            share(*l, *s).map(|v| (*t, v))
        })
        .collect()
}

/// legacy / (legacy + split); None when nothing was written.
pub fn share(legacy: f64, split: f64) -> Option<f64> {
    let sum = legacy + split;
    (sum > 0.0 && legacy >= 0.0 && split >= 0.0).then(|| legacy / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_legacy_over_both() {
        assert_eq!(share(1.0, 3.0), Some(0.25));
        assert_eq!(share(0.0, 0.0), None);
        let s =
            legacy_share(&vec![(10.0, 3.0), (20.0, 0.0), (30.0, 1.0)], &vec![(10.0, 1.0), (20.0, 0.0), (40.0, 1.0)]);
        assert_eq!(s, vec![(10.0, 0.25)]);
    }
}
