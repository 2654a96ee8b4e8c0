//! `POST /api/v1/hooks/alertmanager`: Alertmanager's webhook (payload version 4) as an order. A
//! firing alert whose labels match a rule of `hooks.alertmanager.rules` trips the kill switch or
//! pauses the autopilot, through the same paths as a person, as the actor `alertmanager`. Each
//! alert acts once (by fingerprint and start time), however often Alertmanager repeats it, and
//! a kill is never lost to that rule:
//! - a delivery's work runs in a task of its own, so a caller that gives up mid-action
//!   (Alertmanager's timeout while Kubernetes is slow) does not cancel it half way;
//! - the claim is a lease until the action is done (`claims::claim`): a claim left by a process
//!   that died while acting is taken over by a resend once the lease has run out;
//! - a failed action gives its claim back, so the next delivery acts; a delivery that finds an
//!   earlier attempt still acting is answered 503 (never "repeated"), so Alertmanager sends again;
//! - kills go first in a delivery, and one action's failure does not stop the others;
//! - with the state database down a kill is claimed in this process and still acts (a kill twice
//!   over is harmless, a kill lost is not); its audit entry waits in the journal.
//!
//! The dashboard's own alerts (label `source="rollout-dashboard"`) are never acted on.

use crate::api::audit::Action;
use std::collections::BTreeMap;

mod claims;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{self, NewEntry};
use super::caller::Caller;
use super::config::{AlertRule, HookAction};
use super::error::{ApiError, Source, SourceError};
use super::state::AppState;
use crate::api::audit::Outcome;
use crate::api::autopilot::{PlanAction, PlanActionBody};

/// Alertmanager's webhook body (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub fingerprint: String,
}

/// What the hook did with one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookAnswer {
    /// "<alertname> (<fingerprint>): <action>" for each action taken now.
    pub acted: Vec<String>,
    /// Alerts that had acted before (a repeated delivery): nothing done again.
    pub repeated: Vec<String>,
    /// Alerts no rule matches, or resolved ones.
    pub ignored: usize,
}

fn alert_caller(request_id: &str) -> Caller {
    Caller::system("alertmanager", request_id.to_string())
}

/// Compares in constant time (the token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token: 403 when the hook has none configured (it is off), 401 otherwise.
pub fn authorize(state: &AppState, authorization: Option<&str>) -> Result<(), ApiError> {
    let env = &state.settings.hooks.alertmanager.token_env;
    let Some(token) = state.notify.hook_token.as_ref() else {
        return Err(ApiError::Forbidden(format!(
            "the Alertmanager hook is off: set {env} to the token Alertmanager sends"
        )));
    };
    match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
        Some(given) if same(given.trim(), token.expose()) => Ok(()),
        Some(_) => Err(ApiError::Unauthenticated("the bearer token is not the hook's".into())),
        None => Err(ApiError::Unauthenticated("send the hook's token as Authorization: Bearer <token>".into())),
    }
}

fn matches(rule: &AlertRule, labels: &BTreeMap<String, String>) -> bool {
    rule.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The label the dashboard's own alerts carry (`alerting.rs`): the hook never acts on them.
const OWN_ALERTS: (&str, &str) = ("source", "rollout-dashboard");

/// Handles one delivery (already authorized and parsed), in a task of its own that finishes
/// whether or not the caller waits for the answer. The refusals of a bad token or body are
/// recorded by the caller of this (`refuse`).
pub async fn receive(state: &AppState, request_id: &str, p: Payload) -> Result<HookAnswer, ApiError> {
    if p.version != "4" {
        return Err(ApiError::BadRequest(format!("payload version {:?}: this hook reads version 4", p.version)));
    }
    let (state, request_id) = (state.clone(), request_id.to_string());
    tokio::spawn(async move { deliver(&state, &request_id, &p).await })
        .await
        .map_err(|e| ApiError::Failed(format!("the hook's work stopped: {e}")))?
}

async fn deliver(state: &AppState, request_id: &str, p: &Payload) -> Result<HookAnswer, ApiError> {
    let mut answer = HookAnswer { acted: vec![], repeated: vec![], ignored: 0 };
    let mut todo: Vec<(&Alert, HookAction)> = Vec::new();
    for alert in &p.alerts {
        let own = alert.labels.get(OWN_ALERTS.0).is_some_and(|v| v == OWN_ALERTS.1);
        let actions: Vec<HookAction> = state
            .settings
            .hooks
            .alertmanager
            .rules
            .iter()
            .filter(|r| matches(r, &alert.labels))
            .map(|r| r.action)
            .collect();
        if own || alert.status != "firing" || actions.is_empty() {
            answer.ignored += 1;
            continue;
        }
        todo.extend(actions.into_iter().map(|a| (alert, a)));
    }
    // Kills first: nothing else in the delivery (a pause that cannot be claimed while the state
    // database is down, say) may stand in a kill's way.
    todo.sort_by_key(|(_, a)| *a != HookAction::Kill);
    // Every action is tried; the first failure is the answer (Alertmanager then sends again).
    let mut first_error = None;
    for (alert, action) in todo {
        // One request id per alert and action: the audit journal tells entries apart by it.
        let caller = alert_caller(&format!("{request_id}/{}/{}", alert.fingerprint, action.as_str()));
        let name = alert.labels.get("alertname").cloned().unwrap_or_else(|| "(no alertname)".into());
        let label = format!("{name} ({}): {}", alert.fingerprint, action.as_str());
        let claim = match claim(state, alert, action, caller.request_id()).await {
            Ok(c) => c,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        match claim {
            Claim::Repeated => {
                record(state, &caller, alert, &name, action, Outcome::Refused, "already acted on: a repeated delivery")
                    .await;
                answer.repeated.push(label);
                continue;
            }
            Claim::Held => {
                // Not "repeated": the earlier attempt may yet fail, and Alertmanager must send again.
                let why = "an earlier delivery is still acting on this alert: send it again";
                record(state, &caller, alert, &name, action, Outcome::Refused, why).await;
                first_error.get_or_insert(ApiError::Unavailable(SourceError::Missing {
                    system: Source::StateDatabase,
                    detail: format!("{label}: {why}"),
                }));
                continue;
            }
            Claim::Stored | Claim::InProcess => {}
        }
        match act(state, &caller, alert, &name, action).await {
            Ok(done) => {
                claim.settle(state, alert, action, true, caller.request_id()).await;
                record(state, &caller, alert, &name, action, Outcome::Done, &done).await;
                answer.acted.push(label);
            }
            Err(e) => {
                // Not done: a later delivery of the same alert tries again.
                claim.settle(state, alert, action, false, caller.request_id()).await;
                record(state, &caller, alert, &name, action, Outcome::Failed, &e.to_string()).await;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(answer),
    }
}

/// Whose an alert's action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// This attempt's, in the state database (a lease until done).
    Stored,
    /// This attempt's, held in this process: the state database did not answer.
    InProcess,
    /// An earlier attempt's, done: a repeated delivery.
    Repeated,
    /// An earlier attempt's, still acting: this delivery must be sent again.
    Held,
}

/// How long a claim not yet done holds off resends: longer than any action takes. The longest is
/// a kill: its bookkeeping (at most 6 s), a flag write tried twice over a conflict (read, read,
/// get, replace, read back: ten calls, each bounded by the source time limit), the landing (2 s)
/// and its audit entry (one more limit): 8 s + 11 limits, 63 s with the default 5 s limit. An
/// attempt slower still does not undo a newer one: a claim is given back only by its owner.
fn lease(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_secs(20) + state.settings.source_timeout() * 12
}

fn claim_key(alert: &Alert, action: HookAction) -> String {
    format!("{}|{}|{}", alert.fingerprint, alert.starts_at.to_rfc3339(), action.as_str())
}

async fn claim(state: &AppState, alert: &Alert, action: HookAction, owner: &str) -> Result<Claim, ApiError> {
    let (db, fp, at) = (&state.state_db, alert.fingerprint.as_str(), alert.starts_at);
    let stored = claims::claim(db, fp, at, action.as_str(), lease(state), owner);
    match state.services.state_db.call(state.settings.source_timeout(), stored).await {
        Ok(claims::Claimed::Taken) => Ok(Claim::Stored),
        Ok(claims::Claimed::Done) => Ok(Claim::Repeated),
        Ok(claims::Claimed::Held) => Ok(Claim::Held),
        Err(e) if action == HookAction::Kill => {
            tracing::error!(
                fingerprint = fp,
                "the hook cannot store its claim ({e}); the kill acts on a claim held here"
            );
            let mut held = state.notify.outage_claims.lock().unwrap_or_else(|p| p.into_inner());
            Ok(match held.get(&claim_key(alert, action)) {
                None => {
                    held.insert(claim_key(alert, action), false);
                    Claim::InProcess
                }
                Some(true) => Claim::Repeated,
                Some(false) => Claim::Held,
            })
        }
        Err(e) => Err(e.into()),
    }
}

impl Claim {
    /// The action done (the claim kept for good) or failed (the claim given back). A done claim
    /// that cannot be marked runs out its lease, and a resend kills again: harmless.
    async fn settle(self, state: &AppState, alert: &Alert, action: HookAction, done: bool, owner: &str) {
        let (db, fp, at, a) = (&state.state_db, alert.fingerprint.as_str(), alert.starts_at, action.as_str());
        let kept = match (self, done) {
            (Claim::Stored, true) => claims::claim_done(db, fp, at, a).await,
            (Claim::Stored, false) => claims::forget(db, fp, at, a, owner).await,
            (Claim::InProcess, _) => {
                let mut held = state.notify.outage_claims.lock().unwrap_or_else(|p| p.into_inner());
                if done {
                    held.insert(claim_key(alert, action), true);
                } else {
                    held.remove(&claim_key(alert, action));
                }
                Ok(())
            }
            (Claim::Repeated | Claim::Held, _) => Ok(()),
        };
        if let Err(e) = kept {
            tracing::error!(fingerprint = fp, "the hook's claim cannot be settled ({e}); its lease runs out instead");
        }
    }
}

fn why(alert: &Alert, name: &str) -> String {
    let summary = alert.annotations.get("summary").map(|s| format!(": {s}")).unwrap_or_default();
    format!("Alertmanager alert {name} (fingerprint {}, firing since {}){summary}", alert.fingerprint, alert.starts_at)
}

async fn act(
    state: &AppState,
    caller: &Caller,
    alert: &Alert,
    name: &str,
    action: HookAction,
) -> Result<String, ApiError> {
    match action {
        HookAction::Record => Ok("recorded".into()),
        HookAction::Kill => {
            let done = super::rollout::kill(state, caller, Some(why(alert, name))).await?;
            Ok(format!("kill switch: {} → {}", done.before, done.after))
        }
        HookAction::PauseAutopilot => {
            let body = PlanActionBody { reason: Some(why(alert, name)), ..Default::default() };
            match super::autopilot::Service::new(state).act(caller, PlanAction::Pause, body).await {
                Ok(view) => Ok(format!("autopilot plan #{} paused", view.plan.map(|p| p.id).unwrap_or_default())),
                Err(ApiError::Conflict { message, .. }) => Ok(format!("nothing to pause: {message}")),
                Err(e) => Err(e),
            }
        }
    }
}

/// The alert's audit entry: its labels and fingerprint, what it led to.
async fn record(
    state: &AppState,
    caller: &Caller,
    alert: &Alert,
    name: &str,
    action: HookAction,
    outcome: Outcome,
    detail: &str,
) {
    let labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let entry: NewEntry = caller
        .entry(Action::HookAlert, format!("alert {}", alert.fingerprint))
        .values(None, Some(format!("{name}: {}", action.as_str())))
        .reason(Some(format!("labels {{{}}}, firing since {}", labels.join(", "), alert.starts_at)))
        .outcome(outcome, Some(detail.to_string()));
    let recorded =
        state.services.state_db.call(state.settings.source_timeout(), audit::record(&state.state_db, &entry)).await;
    // Recorded, or journaled for the state database to take when it answers again.
    state.journal.settle(&entry, recorded.is_ok());
    if let Err(e) = recorded {
        tracing::error!(
            fingerprint = alert.fingerprint,
            "the audit trail cannot take an alert's action now ({e}); the journal holds it"
        );
    }
}

/// A delivery refused before it was read: a bad body is audited; a caller without the token
/// is anybody, counted in `/metrics` and kept out of the audit trail.
pub async fn refuse(state: &AppState, request_id: &str, e: ApiError) -> Result<HookAnswer, ApiError> {
    if matches!(e, ApiError::Unauthenticated(_)) {
        let nobody = super::caller::Caller::new(None, request_id);
        nobody.counted_if_anonymous(&state.services.metrics, Action::HookAlert);
        return Err(e);
    }
    alert_caller(request_id)
        .refusal_recorded(&state.state_db, &state.services.metrics, Action::HookAlert, "alertmanager", Err(e))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_matches_when_every_label_it_names_is_on_the_alert() {
        let rule = AlertRule {
            match_labels: [("alertname".into(), "LegacyDoseSurge".into()), ("rollout".into(), "x".into())].into(),
            action: HookAction::Kill,
        };
        let mut labels: BTreeMap<String, String> =
            [("alertname".into(), "LegacyDoseSurge".into()), ("rollout".into(), "x".into())].into();
        labels.insert("severity".into(), "page".into());
        assert!(matches(&rule, &labels));
        labels.insert("rollout".into(), "y".into());
        assert!(!matches(&rule, &labels));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "abcd"));
    }

    #[test]
    fn the_payload_is_alertmanagers_version_4() {
        let p: Payload = serde_json::from_str(
            r#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"firing","receiver":"dashboard",
                "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am",
                "alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{"summary":"s"},
                "startsAt":"2026-12-03T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p",
                "fingerprint":"abc123"}]}"#,
        )
        .unwrap();
        assert_eq!((p.version.as_str(), p.alerts[0].fingerprint.as_str()), ("4", "abc123"));
    }
}
