//! Alertmanager's `POST /api/v2/alerts`: a receiver told conditions, which it holds as alerts
//! while they hold (`alerting.rs`), never events.

use serde_json::Value;

use super::super::receivers::{answer, Answer, Receiver};
use super::{Delivery, Kind, Sending};

pub struct Alertmanager;

impl Kind for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn holds_conditions(&self) -> bool {
        true
    }

    fn deliver<'a>(&'a self, _: Delivery<'a>) -> Sending<'a> {
        Box::pin(async { Ok(Answer::Rejected { status: 0, detail: "alerts are sent by condition".into() }) })
    }
}

/// Posts alerts (firing or resolved).
pub async fn post_alerts(r: &Receiver, alerts: &Value) -> Answer {
    answer(r.request(reqwest::Method::POST, "/api/v2/alerts").json(alerts)).await
}
