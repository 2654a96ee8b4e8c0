//! Alertmanager as a receiver: not events but conditions, as Alertmanager expects from an alert
//! source. While a condition holds (the rollout killed, the autopilot paused or one of its checks
//! failing, a rollback run stopped or waiting for approval) its alert is posted to
//! `POST /api/v2/alerts` every `resend_secs`, with `endsAt` four resends ahead, so that an alert
//! which stops coming (this dashboard gone) resolves by itself; when the condition ends the alert
//! is posted once more with `endsAt` = now: resolved. What is firing is kept in the state database
//! (`notify_alerts`), so a restarted or another replica resolves what this one raised.

use crate::api::audit::Action;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::api::autopilot::{PlanState, Verdict};
use crate::api::rollback::RunState;

use super::super::audit;
use super::super::autopilot::store as plans;
use super::super::config::Severity;
use super::super::error::SourceError;
use super::super::locks::{with_lock, Lock};
use super::super::rollback::store as runs;
use super::super::state::AppState;
use super::outbox::{origin, Pass};
use super::receivers::{Answer, Origin, Receiver};
use super::store::{self, Attempt, FiringAlert};

/// One condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub alertname: &'static str,
    pub severity: Severity,
    /// Labels beyond the common ones (the plan, the check, the run).
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
}

impl Condition {
    fn new(alertname: &'static str, severity: Severity, summary: String, description: String) -> Condition {
        Condition { alertname, severity, labels: BTreeMap::new(), summary, description }
    }

    fn label(mut self, k: &str, v: impl ToString) -> Condition {
        self.labels.insert(k.into(), v.to_string());
        self
    }

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

/// The conditions that hold now. An error (the state database cannot be read) changes nothing:
/// no alert is resolved because a source could not be read.
pub async fn conditions(state: &AppState) -> Result<Vec<Condition>, SourceError> {
    let db = &state.state_db;
    let mut out = Vec::new();
    if let Some(change) = audit::last_flag_change(db).await? {
        if [Action::FlagKill, Action::FlagKillRetry].map(Action::as_str).contains(&change.1.as_str()) {
            out.push(Condition::new(
                "RolloutKilled",
                Severity::Critical,
                format!("The rollout was killed by {}: the flag is at 0 %", change.0),
                "Every user writes the legacy dose until someone sets the percentage again.".into(),
            ));
        }
    }
    // A kill that has not landed holds until it does.
    if let Some(k) = super::super::kill_requests::pending(db).await?.first() {
        out.push(
            Condition::new(
                "RolloutKillFailing",
                Severity::Critical,
                format!("A kill asked by {} has not landed: the rollout is still up", k.actor),
                format!(
                    "Asked at {}; {} attempt(s), retried every round; last error: {}. Set the flag to 0 by hand if \
                     this lasts.",
                    k.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    k.attempts,
                    k.last_error.as_deref().unwrap_or("none yet")
                ),
            )
            .label("kill", k.id),
        );
    }
    // A receiver that refuses us (a revoked token, a moved webhook) tells nobody by itself.
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
    if let Some(plan) = plans::latest(db).await? {
        if plan.state == PlanState::Paused {
            let why = plan.pause_reason.clone().unwrap_or_default();
            out.push(
                Condition::new(
                    "AutopilotPaused",
                    Severity::Warning,
                    format!("Autopilot plan #{} is paused", plan.id),
                    why,
                )
                .label("plan", plan.id),
            );
        }
        if matches!(plan.state, PlanState::Running | PlanState::Paused) {
            let latest = plans::latest_of(&plans::evaluations(db, plan.id, 200).await?);
            for e in latest.iter().filter(|e| e.verdict == Verdict::Fail && !plan.dismissed.contains(&e.check)) {
                out.push(
                    Condition::new(
                        "AutopilotCheckFailing",
                        Severity::Warning,
                        format!("Autopilot check {} is failing (plan #{})", e.check, plan.id),
                        format!("{} (passes when {})", e.detail, e.threshold),
                    )
                    .label("plan", plan.id)
                    .label("check", &e.check),
                );
            }
        }
    }
    if let Some((id, run)) = runs::active_run(db).await? {
        let stopped = |what: &str| format!("Rollback run #{id} {what}");
        let c = match run {
            RunState::Stopped => {
                Some(("RollbackStopped", stopped("stopped at a failed step"), "retry, skip or abort it"))
            }
            RunState::Interrupted => Some((
                "RollbackStopped",
                stopped("was interrupted"),
                "the dashboard stopped mid-step; resume or abort it",
            )),
            RunState::AwaitingApproval => {
                Some(("RollbackNeedsApproval", stopped("needs a second operator"), "another operator must approve it"))
            }
            _ => None,
        };
        if let Some((name, summary, what)) = c {
            out.push(
                Condition::new(name, Severity::Critical, summary, format!("On /rollback: {what}.")).label("run", id),
            );
        }
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
        let wait = match with_lock(&state, Lock::Receiver(receiver.name()), pass(&state, &receiver, every)).await {
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
    let answer = r.post_alerts(&Value::Array(alerts)).await;
    let (ok, status, detail) = match &answer {
        Answer::Delivered { status, .. } => (true, Some(*status), None),
        Answer::Rejected { status, detail } => (false, Some(*status), Some(detail.clone())),
        Answer::Failed { status, detail, .. } => (false, *status, Some(detail.clone())),
    };
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
    match answer {
        Answer::Delivered { .. } => {
            state.services.metrics.notification(r.name(), "delivered");
            let gone: Vec<&str> = resolved.iter().map(|f| f.key.as_str()).collect();
            store::hold_alerts(db, r.name(), &hold, &gone).await?;
            Ok(Pass::Idle)
        }
        Answer::Rejected { .. } => {
            state.services.metrics.notification(r.name(), "rejected");
            tracing::warn!(receiver = r.name(), "Alertmanager refused the alerts; they are sent again next time");
            Ok(Pass::Idle)
        }
        Answer::Failed { retry_after, .. } => {
            state.services.metrics.notification(r.name(), "failed");
            Ok(Pass::Failed(retry_after))
        }
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
