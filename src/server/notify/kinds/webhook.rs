//! Our own webhook: a JSON POST (README: "Notifications"), signed with HMAC-SHA256 when
//! `secret_env` names a key.

use serde_json::{json, Value};

use super::super::event::Event;
use super::super::receivers::{answer, delivery_id, signature, Origin};
use super::{Delivery, Kind, Sending};

pub struct Webhook;

impl Kind for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> Sending<'a> {
        Box::pin(async move {
            let body = webhook_body(d.event, d.origin).to_string();
            let mut req = d.receiver.request(reqwest::Method::POST, "").header("content-type", "application/json");
            req = req
                .header("x-rollout-event", d.event.name)
                .header("x-rollout-delivery", delivery_id(d.receiver, d.event));
            if let Some(key) = d.receiver.secret() {
                req = req.header("x-rollout-signature", signature(key, chrono::Utc::now().timestamp(), &body));
            }
            Ok(answer(req.body(body)).await)
        })
    }
}

/// The generic webhook's JSON body (README: "Notifications").
pub fn webhook_body(event: &Event, origin: &Origin) -> Value {
    let e = &event.entry;
    json!({
        "id": e.id,
        "event": event.name,
        "severity": event.severity.as_str(),
        "title": event.title,
        "at": e.at.to_rfc3339(),
        "environment": origin.environment,
        "flag": origin.flag,
        "actor": e.actor,
        "role": e.role,
        "target": e.target,
        "before": e.value_before,
        "after": e.value_after,
        "reason": e.reason,
        "detail": e.outcome_detail,
        "request_id": e.request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::receivers::tests::{event, origin};
    use super::*;
    use crate::api::audit::Action;

    #[test]
    fn the_body_carries_what_the_readme_documents() {
        let w = webhook_body(&event(), &origin());
        assert_eq!(
            (w["id"].as_i64(), w["event"].as_str(), w["severity"].as_str()),
            (Some(41), Some(Action::FlagKill.as_str()), Some("critical"))
        );
        assert_eq!((w["before"].as_str(), w["after"].as_str()), (Some("25"), Some("0")));
    }
}
