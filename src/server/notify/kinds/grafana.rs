//! Grafana's annotations API with a service-account token: an event is a point annotation
//! (`POST /api/annotations`); a rollback run is a region, opened by its start and closed by its
//! end, done or aborted (`PATCH /api/annotations/{id}`).

use serde_json::{json, Value};

use crate::api::audit::Action;

use super::super::super::config::ReceiverSettings;
use super::super::event::Event;
use super::super::receivers::{answer, Answer, Origin, Receiver};
use super::super::store;
use super::{Delivery, Kind, Sending};

pub struct Grafana;

impl Kind for Grafana {
    fn name(&self) -> &'static str {
        "grafana"
    }

    fn check(&self, settings: &ReceiverSettings) -> Result<(), String> {
        match settings.secret_env {
            Some(_) => Ok(()),
            None => Err("Grafana needs secret_env naming its service-account token".into()),
        }
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> Sending<'a> {
        Box::pin(async move {
            let (r, ev) = (d.receiver, d.event);
            let point = || async {
                answer(request(r, reqwest::Method::POST, "/api/annotations").json(&grafana_body(ev, d.origin, None)))
                    .await
            };
            let Some(run) = ev.entry.run_id else { return Ok(point().await) };
            match ev.action {
                // A start, waiting for approval or not.
                Action::RollbackStart => {
                    let answer = point().await;
                    if let Answer::Delivered { annotation_id: Some(id), .. } = answer {
                        store::open_region(d.db, r.name(), run, id).await?;
                    }
                    Ok(answer)
                }
                Action::RollbackDone | Action::RollbackAbort => match store::region(d.db, r.name(), run).await? {
                    Some((id, false)) => {
                        let end = json!({ "timeEnd": ev.entry.at.timestamp_millis() });
                        let path = format!("/api/annotations/{id}");
                        let answer = answer(request(r, reqwest::Method::PATCH, &path).json(&end)).await;
                        if matches!(answer, Answer::Delivered { .. }) {
                            store::close_region(d.db, r.name(), run).await?;
                        }
                        Ok(answer)
                    }
                    _ => Ok(point().await),
                },
                _ => Ok(point().await),
            }
        })
    }
}

/// A request to Grafana's API, with the service-account token.
fn request(r: &Receiver, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let req = r.request(method, path);
    match r.secret() {
        Some(token) => req.bearer_auth(token.expose()),
        None => req,
    }
}

/// Grafana's annotation: a point at the event, or a region when `end_ms` is given.
pub fn grafana_body(event: &Event, origin: &Origin, end_ms: Option<i64>) -> Value {
    let mut text = event.title.clone();
    for (k, v) in event.details() {
        text.push_str(&format!("\n{k}: {v}"));
    }
    let mut body = json!({
        "time": event.entry.at.timestamp_millis(),
        "tags": ["rollout", origin.flag, event.name, event.severity.as_str(), origin.environment],
        "text": text,
    });
    if let Some(end) = end_ms {
        body["timeEnd"] = json!(end);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::super::super::receivers::tests::{event, origin};
    use super::*;

    #[test]
    fn an_annotation_has_its_times_and_tags() {
        let g = grafana_body(&event(), &origin(), Some(1_764_000_060_000));
        assert_eq!(g["time"], 1_764_000_000_000i64);
        assert_eq!(g["timeEnd"], 1_764_000_060_000i64);
        assert_eq!(g["tags"], json!(["rollout", "insulin_dose_split", Action::FlagKill, "critical", "demo"]));
    }
}
