//! The built-in check `dose_totals`.

use crate::api::autopilot::Verdict;

use super::super::super::dose_totals::{judge, Judgement};
use super::super::super::service;
use super::super::super::state::AppState;
use super::{Check, Found, Look, Round};

/// Patients whose mean daily short total changed by `dose_totals.factor` or more, up or down,
/// between the whole days before and after their move to the split path, are at most
/// `dose_totals.max_changed_share` of the patients compared. The unit is a patient; a patient
/// is compared with `dose_totals.min_days` whole days on each side, and fewer than
/// `dose_totals.min_patients` compared is inconclusive. The detail counts patients and never
/// names one.
pub struct DoseTotals;

impl Check for DoseTotals {
    fn name(&self) -> &'static str {
        "dose_totals"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(dose_totals(r.state))
    }
}

async fn dose_totals(state: &AppState) -> Found {
    let s = &state.settings.dose_totals;
    let threshold = format!(
        "≤ {:.1} % of patients compared change their daily short total by ×{} or more, with ≥ {} compared",
        s.max_changed_share * 100.0,
        s.factor,
        s.min_patients
    );
    let t = match service::dose_totals(state, false).await {
        Ok(t) => t,
        Err(e) => return Found::inconclusive(threshold, "", e),
    };
    let (share, passed) = match judge(&t) {
        Judgement::Inconclusive(why) => return Found::inconclusive(threshold, t.query, why),
        Judgement::Judged { share, passed } => (share, passed),
    };
    Found {
        verdict: if passed { Verdict::Pass } else { Verdict::Fail },
        value: Some(share),
        threshold,
        sample: Some(t.both_sides),
        query: t.query,
        detail: format!(
            "{} of {} patients compared changed their daily short total by ×{} or more ({:.2} %); {} logged no long \
             dose after the move; median after/before {}",
            t.changed,
            t.both_sides,
            t.factor,
            share * 100.0,
            t.no_long_after,
            t.median_ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into())
        ),
    }
}
