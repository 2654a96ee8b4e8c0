//! Alertmanager as a receiver: not events but conditions, as Alertmanager expects from an alert
//! source. While a condition holds (the rollout killed, the autopilot paused or one of its checks
//! failing, a rollback run stopped or waiting for approval) its alert is posted to
//! `POST /api/v2/alerts` every `resend_secs`, with `endsAt` four resends ahead, so that an alert
//! which stops coming (this dashboard gone) resolves by itself; when the condition ends the alert
//! is posted once more with `endsAt` = now: resolved. What is firing is kept in the state database
//! (`notify_alerts`), so a restarted or another replica resolves what this one raised.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::super::conditions::Condition;
use super::super::config::Severity;
use super::super::error::SourceError;
use super::super::locks::{with_lock, Lock};
use super::super::state::AppState;
use super::outbox::{origin, Pass};
use super::receivers::{Answer, Origin, Receiver};
use super::store::{self, Attempt, FiringAlert};

impl Condition {
    /// Every label the alert carries; together they are its identity in Alertmanager.
    pub fn all_labels(&self, origin: &Origin) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("alertname".into(), self.alertname.into());
        l.insert("severity".into(), self.severity.as_str().into());
        l.insert("rollout".into(), origin.flag.clone());
        l.insert("environment".into(), origin.environment.clone());
        l.insert("source".into(), "rollout-dashboard".into());
        l
    }
}

/// The key a firing alert is kept under: its labels, sorted.
pub fn key_of(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(",")
}

/// The conditions that hold now: each domain's (`conditions::holding`) and the receivers'
/// own (one that refuses us tells nobody by itself). An error (the state database cannot be
/// read) changes nothing: no alert is resolved because a source could not be read.
pub async fn conditions(state: &AppState) -> Result<Vec<Condition>, SourceError> {
    let db = &state.state_db;
    let mut out = super::super::conditions::holding::holding(db).await?;
    for (receiver, status, since, attempts) in super::store::refusing_receivers(db).await? {
        out.push(
            Condition::new(
                "NotificationReceiverRefusing",
                Severity::Warning,
                format!("Receiver {receiver} refuses the dashboard's notifications (HTTP {status})"),
                format!(
                    "Since {}; {attempts} attempt(s), retried with back-off. Its events wait: check its URL and token.",
                    since.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )
            .label("receiver", &receiver),
        );
    }
    Ok(out)
}

/// Alertmanager's `postableAlert`.
pub fn postable(
    labels: &BTreeMap<String, String>,
    annotations: &Value,
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
) -> Value {
    json!({ "labels": labels, "annotations": annotations, "startsAt": starts.to_rfc3339(), "endsAt": ends.to_rfc3339() })
}

/// Posts the holding alerts (and resolves those that stopped holding) every resend, for as long
/// as the process lives; one replica at a time per receiver.
pub async fn hold_forever(state: AppState, receiver: Receiver) {
    let every = receiver.settings.resend();
    let (min, max) = state.settings.notify.retry_bounds();
    let (min, max) = (Duration::from_secs(min), Duration::from_secs(max));
    let mut backoff = min;
    loop {
        let wait = match with_lock(&state.locks, Lock::Receiver(receiver.name()), pass(&state, &receiver, every)).await
        {
            Ok(Some(Pass::Failed(retry_after))) => {
                let wait = retry_after.unwrap_or(backoff).clamp(min, max).min(every);
                backoff = (backoff * 2).min(max);
                wait
            }
            Ok(_) => {
                backoff = min;
                every
            }
            Err(e) => {
                tracing::warn!(receiver = receiver.name(), "alerts: {e}");
                every
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One resend: every holding alert, and the resolution of every alert that stopped holding.
async fn pass(state: &AppState, r: &Receiver, every: Duration) -> Result<Pass, SourceError> {
    let db = &state.state_db;
    let (now, origin) = (Utc::now(), origin(state));
    let mut holding = conditions(state).await?;
    holding.retain(|c| c.severity >= r.settings.min_severity);
    let firing = store::firing_alerts(db, r.name()).await?;
    let ends = now + chrono::Duration::from_std(every * 4).unwrap_or_default();
    let mut alerts = Vec::new();
    let mut hold = Vec::new();
    for c in &holding {
        let labels = c.all_labels(&origin);
        let key = key_of(&labels);
        let starts = firing.iter().find(|f| f.key == key).map_or(now, |f| f.starts_at);
        let annotations = json!({ "summary": c.summary, "description": c.description });
        alerts.push(postable(&labels, &annotations, starts, ends));
        hold.push(FiringAlert { key, labels: json!(labels), annotations, starts_at: starts });
    }
    let resolved: Vec<&FiringAlert> = firing.iter().filter(|f| !hold.iter().any(|h| h.key == f.key)).collect();
    for f in &resolved {
        let labels: BTreeMap<String, String> = serde_json::from_value(f.labels.clone()).unwrap_or_default();
        alerts.push(postable(&labels, &f.annotations, f.starts_at, now));
    }
    if alerts.is_empty() {
        return Ok(Pass::Idle);
    }
    let changed = !resolved.is_empty() || hold.iter().any(|h| !firing.iter().any(|f| f.key == h.key));
    let started = Instant::now();
    let answer = super::kinds::alertmanager::post_alerts(r, &Value::Array(alerts)).await;
    let (ok, status, detail) = answer.summary();
    if changed || !ok {
        let names: Vec<&str> = holding.iter().map(|c| c.alertname).collect();
        let event = format!("alerts: {} firing, {} resolved", names.len(), resolved.len());
        let severity = holding.iter().map(|c| c.severity).max().unwrap_or_default();
        let attempt = Attempt {
            receiver: r.name(),
            audit_id: None,
            event: &event,
            severity: severity.as_str(),
            ok,
            status,
            detail: detail.or_else(|| Some(names.join(", "))),
            millis: started.elapsed().as_millis(),
        };
        store::record_attempt(db, &attempt).await?;
    }
    state.services.metrics.notification(r.name(), answer.outcome());
    match answer {
        Answer::Delivered { .. } => {
            let gone: Vec<&str> = resolved.iter().map(|f| f.key.as_str()).collect();
            store::hold_alerts(db, r.name(), &hold, &gone).await?;
            Ok(Pass::Idle)
        }
        Answer::Rejected { .. } => {
            tracing::warn!(receiver = r.name(), "Alertmanager refused the alerts; they are sent again next time");
            Ok(Pass::Idle)
        }
        Answer::Failed { retry_after, .. } => Ok(Pass::Failed(retry_after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_identified_by_all_its_labels_and_posted_as_alertmanager_reads_it() {
        let origin = Origin { environment: "demo".into(), flag: "insulin_dose_split".into() };
        let c = Condition::new("AutopilotCheckFailing", Severity::Warning, "s".into(), "d".into())
            .label("plan", 3)
            .label("check", "doubled_doses");
        let labels = c.all_labels(&origin);
        assert_eq!(
            key_of(&labels),
            r#"alertname="AutopilotCheckFailing",check="doubled_doses",environment="demo",plan="3",rollout="insulin_dose_split",severity="warning",source="rollout-dashboard""#
        );
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let p = postable(&labels, &json!({"summary": "s"}), at, at + chrono::Duration::seconds(120));
        assert_eq!(p["startsAt"], "2025-11-24T16:00:00+00:00");
        assert_eq!(p["endsAt"], "2025-11-24T16:02:00+00:00");
        assert_eq!(p["labels"]["alertname"], "AutopilotCheckFailing");
    }
}
