//! Delivery: for each receiver, one loop on every replica, one replica at a time (an advisory
//! lock per receiver). Each pass sends the due entries oldest first and stops at the first that
//! fails, so a receiver that was down gets everything afterwards, in order. A failure backs off
//! (doubling, or the receiver's `Retry-After`); other receivers are not held up. The action that
//! made the entry never waits for any of this.

use std::time::{Duration, Instant};

use super::super::audit;
use super::super::locks::{with_lock, Lock};
use super::super::state::AppState;
use super::event::{self, Event};
use super::receivers::{Answer, Origin, Receiver};
use super::store::{self, Attempt};
use crate::server::error::SourceError;

/// How often a receiver with nothing due looks again.
const POLL: Duration = Duration::from_secs(1);

/// How a pass ended.
pub(super) enum Pass {
    /// Nothing more is due (or another replica holds the receiver).
    Idle,
    /// A delivery failed: wait before the next pass.
    Failed(Option<Duration>),
}

pub fn origin(state: &AppState) -> Origin {
    let flag = match state.settings.flag.backend {
        crate::server::config::FlagBackend::Launchdarkly => state.settings.flag.launchdarkly_key(),
        crate::server::config::FlagBackend::Kubernetes => &state.settings.flag.key,
    };
    Origin { environment: state.settings.environment.clone(), flag: flag.into() }
}

/// Sends to `receiver` for as long as the process lives.
pub async fn deliver_forever(state: AppState, receiver: Receiver) {
    let (min, max) = state.settings.notify.retry_bounds();
    let (min, max) = (Duration::from_secs(min), Duration::from_secs(max));
    let mut backoff = min;
    loop {
        let wait = match with_lock(&state.locks, Lock::Receiver(receiver.name()), pass(&state, &receiver)).await {
            Ok(Some(Pass::Idle)) | Ok(None) => {
                backoff = min;
                POLL
            }
            Ok(Some(Pass::Failed(retry_after))) => {
                if backoff == min {
                    // Once per failing streak; every attempt is on /audit with what it answered.
                    tracing::warn!(
                        receiver = receiver.name(),
                        "notifications: a delivery failed; retried with back-off"
                    );
                }
                let wait = retry_after.unwrap_or(backoff).clamp(min, max);
                backoff = (backoff * 2).min(max);
                wait
            }
            Err(e) => {
                tracing::warn!(receiver = receiver.name(), "notifications: {e}");
                POLL * 5
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One pass: the due entries, oldest first, until one fails.
async fn pass(state: &AppState, receiver: &Receiver) -> Result<Pass, SourceError> {
    let db = &state.state_db;
    let name = receiver.name();
    let first = store::first_id(db, name).await?;
    let due = audit::not_yet_sent(db, name, first, &event::actions(), 50).await?;
    let origin = origin(state);
    // An entry that has failed `dead_letter_after` times in a row: the one behind it is tried. If
    // the receiver takes that one, the set-aside entry is the trouble (a dead letter); if not, the
    // receiver is, and the entry stays first in line.
    let mut suspect: Option<(i64, String, i32)> = None;
    for entry in due {
        let Some(ev) = Event::of(&entry).filter(|e| receiver.settings.wants(e.name, e.severity)) else {
            store::mark(db, name, entry.id, "skipped").await?;
            continue;
        };
        let started = Instant::now();
        let answer = send(state, receiver, &ev, &origin).await?;
        let (ok, status, detail) = answer.summary();
        let attempt = Attempt {
            receiver: name,
            audit_id: Some(entry.id),
            event: ev.name,
            severity: ev.severity.as_str(),
            ok,
            status,
            detail,
            millis: started.elapsed().as_millis(),
        };
        let n = store::record_attempt(db, &attempt).await?;
        state.services.metrics.notification(name, answer.outcome());
        match answer {
            Answer::Delivered { .. } => {
                store::mark(db, name, entry.id, "delivered").await?;
                set_aside(state, name, suspect.take()).await?;
            }
            Answer::Rejected { .. } => {
                tracing::warn!(receiver = name, event = ev.name, "a receiver refused an event; it is not sent again");
                store::mark(db, name, entry.id, "rejected").await?;
                set_aside(state, name, suspect.take()).await?;
            }
            Answer::Failed { retry_after, .. } => {
                let after = state.settings.notify.dead_letter_after();
                if suspect.is_none() && n > 0 && (n as u32).is_multiple_of(after) {
                    suspect = Some((entry.id, ev.name.to_string(), n));
                    continue;
                }
                return Ok(Pass::Failed(retry_after));
            }
        }
    }
    // Nothing behind the suspect: the receiver may be down; it stays first in line.
    if suspect.is_some() {
        return Ok(Pass::Failed(None));
    }
    Ok(Pass::Idle)
}

/// The receiver took the entry behind `suspect`: the suspect is a dead letter.
async fn set_aside(state: &AppState, name: &str, suspect: Option<(i64, String, i32)>) -> Result<(), SourceError> {
    let Some((id, event, attempts)) = suspect else { return Ok(()) };
    tracing::warn!(
        receiver = name,
        event,
        attempts,
        "gave up on an event the receiver takes others than: a dead letter now (/audit lists it; resend from there)"
    );
    state.services.metrics.notification(name, "dead");
    store::mark(&state.state_db, name, id, "dead").await
}

/// Sends one event as the receiver's kind does.
async fn send(state: &AppState, r: &Receiver, ev: &Event, origin: &Origin) -> Result<Answer, SourceError> {
    super::kinds::of(r).deliver(super::kinds::Delivery { db: &state.state_db, receiver: r, event: ev, origin }).await
}
