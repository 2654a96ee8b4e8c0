//! Telling people (taking orders from alerts is `hook/`'s).
//!
//! - `event`: which audit entries are events, their severity and their sentence.
//! - `receivers`: a receiver ready to send, and how its answer is read.
//! - `kinds`: what each kind of receiver is sent (signed webhook, Slack, Grafana, Alertmanager),
//!   one file each behind one trait.
//! - `outbox`: delivery from the audit trail, at least once, in order, with back-off, one
//!   replica per receiver.
//! - `alerting`: Alertmanager as a receiver: alerts that fire while a condition holds.
//! - `store`: every SQL statement on the notification tables.
//! - `configured`: the receivers as configured (held by the shared state).
//! - This file: the service both doors call.

pub mod alerting;
pub mod configured;
pub mod event;
pub mod kinds;
pub mod outbox;
pub mod receivers;
pub mod store;

pub use configured::Receivers;

use crate::api::audit::Action;
use crate::api::audit::Outcome;
use crate::api::notify::{NotificationsView, ReceiverState};

use super::audit;
use super::caller::Caller;
use super::error::{ApiError, SourceError};
use super::state::AppState;

/// Every receiver's state and the newest delivery attempts.
pub async fn view(state: &AppState) -> Result<NotificationsView, SourceError> {
    let db = &state.state_db;
    let actions = event::actions();
    let mut receivers = Vec::new();
    let configured = state
        .notify
        .ready
        .iter()
        .map(|r| (&r.settings, None))
        .chain(state.notify.unusable.iter().map(|(s, why)| (s, Some(why.clone()))));
    for (s, unusable) in configured {
        let alerts = kinds::named(&s.kind).is_some_and(|k| k.holds_conditions());
        let (due, firing) = if alerts {
            let firing = store::firing_alerts(db, &s.name).await?;
            (0, firing.iter().map(|a| a.labels["alertname"].as_str().unwrap_or_default().to_string()).collect())
        } else {
            let first = store::first_id(db, &s.name).await?;
            (store::due_count(db, &s.name, first, &actions).await?, vec![])
        };
        let (delivered, rejected, failing_since, last_error) = store::receiver_counts(db, &s.name, alerts).await?;
        let dead = store::dead_count(db, &s.name).await?;
        receivers.push(ReceiverState {
            name: s.name.clone(),
            kind: s.kind.clone(),
            events: s.events.clone(),
            min_severity: s.min_severity.as_str().into(),
            unusable,
            due,
            firing,
            delivered,
            rejected,
            dead,
            failing_since,
            last_error,
        });
    }
    Ok(NotificationsView {
        receivers,
        attempts: store::recent_attempts(db, 50).await?,
        dead_letters: store::dead_letters(db, 50).await?,
    })
}

/// `POST /api/v1/notifications/{receiver}/resend`: an operator sends a dead letter again
/// (audited as `notify.resend`).
pub async fn resend(state: &AppState, caller: &Caller, receiver: &str, audit_id: i64) -> Result<(), ApiError> {
    let result = async {
        let me = caller.operator("sending a dead letter again", "send notifications again")?;
        if !state.notify.ready.iter().any(|r| r.name() == receiver) {
            return Err(ApiError::NotFound(format!("there is no receiver {receiver:?} able to send")));
        }
        if !store::resend(&state.state_db, receiver, audit_id).await? {
            return Err(ApiError::NotFound(format!("{receiver} has no dead letter for audit entry #{audit_id}")));
        }
        tracing::info!(receiver, audit_id, user = %me.user, "a dead letter is due again");
        Ok(())
    }
    .await;
    let entry = caller.entry(Action::NotifyResend, receiver).values(None, Some(format!("entry #{audit_id}")));
    match &result {
        Ok(()) => {
            audit::record(&state.state_db, &entry.outcome(Outcome::Done, None)).await?;
        }
        Err(_) => {
            return caller
                .refusal_recorded(&state.state_db, &state.services.metrics, Action::NotifyResend, receiver, result)
                .await
        }
    }
    result
}
