//! The built-in check `crossover`.

use crate::api::autopilot::Verdict;

use super::super::super::crossover::{judge, Judgement};
use super::super::super::service;
use super::super::super::state::AppState;
use super::{Check, Found, Look, Round};

/// Patients who went back (a legacy record after a split record the same day) are at most
/// `crossover.max_back_share` of the day's patients on the split path. The unit is a patient,
/// the day the current one once it has `crossover.min_patients` of them (before that the day
/// before, unless today already has patients who went back); fewer is inconclusive. Crossing forward, once, on the day the flag reaches
/// a patient's bucket is what a rollout is and never fails it. The detail counts patients and
/// never names one.
pub struct Crossover;

impl Check for Crossover {
    fn name(&self) -> &'static str {
        "crossover"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(crossover(r.state))
    }
}

async fn crossover(state: &AppState) -> Found {
    let s = &state.settings.crossover;
    let threshold = format!(
        "≤ {:.2} % of a day's patients on the split path go back to legacy, with ≥ {} of them",
        s.max_back_share * 100.0,
        s.min_patients
    );
    let c = match service::crossover(state, false).await {
        Ok(c) => c,
        Err(e) => return Found::inconclusive(threshold, "", e),
    };
    let (day, share, passed) = match judge(&c.days, s) {
        Judgement::Inconclusive(why) => return Found::inconclusive(threshold, c.query, why),
        Judgement::Judged { day, share, passed } => (day, share, passed),
    };
    Found {
        verdict: if passed { Verdict::Pass } else { Verdict::Fail },
        value: Some(share),
        threshold,
        sample: Some(day.exposed),
        query: c.query,
        detail: format!(
            "on {}{}: {} of {} patients on the split path went back to legacy ({:.2} %); {} crossed in all, {} active",
            day.day,
            if day.complete { "" } else { " so far" },
            day.back,
            day.exposed,
            share * 100.0,
            day.crossing,
            day.active
        ),
    }
}
