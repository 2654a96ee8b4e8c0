//! The built-in check `alerts`.

use crate::api::autopilot::Verdict;

use super::super::super::service;
use super::super::super::state::AppState;
use super::{Check, Found, Look, Round};

/// A firing rollout alert (the `alerts.match_labels` ones) fails.
pub struct FiringAlerts;

impl Check for FiringAlerts {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(firing_alerts(r.state))
    }
}

async fn firing_alerts(state: &AppState) -> Found {
    let query = "ALERTS{alertstate=\"firing\"} matching alerts.match_labels";
    match service::alerts(state).await {
        Err(e) => Found::inconclusive("no firing rollout alert", query, e),
        Ok(alerts) => {
            let (firing, said) = super::super::super::alerts::firing(&alerts);
            Found {
                verdict: if firing.is_empty() { Verdict::Pass } else { Verdict::Fail },
                value: Some(firing.len() as f64),
                threshold: "no firing rollout alert".into(),
                sample: None,
                query: query.into(),
                detail: said,
            }
        }
    }
}
