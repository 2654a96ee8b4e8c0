//! Which audit entries are events worth telling, how much each matters, and the sentence that
//! tells it. The audit trail is the outbox (see the migration `notify`): an event is an entry.

use crate::api::audit::{AuditEntry, Outcome};

use super::super::config::Severity;
use super::super::rollback::AWAITING_APPROVAL;

/// Every audit action that is an event, with its severity. `rollback.start` of a run that waits
/// for a second operator becomes `rollback.needs_approval` (critical: somebody must act).
pub const EVENTS: &[(&str, Severity)] = &[
    ("flag.set", Severity::Info),
    ("flag.kill", Severity::Critical),
    ("flag.kill_retry", Severity::Critical),
    ("flag.external_change", Severity::Warning),
    ("autopilot.start", Severity::Info),
    ("autopilot.step", Severity::Info),
    ("autopilot.pause", Severity::Warning),
    ("autopilot.resume", Severity::Info),
    ("autopilot.check_failing", Severity::Warning),
    ("autopilot.check_blind", Severity::Critical),
    ("autopilot.dismiss", Severity::Warning),
    ("autopilot.kill", Severity::Critical),
    ("autopilot.end", Severity::Warning),
    ("autopilot.abort", Severity::Warning),
    ("autopilot.done", Severity::Info),
    ("rollback.start", Severity::Warning),
    ("rollback.approve", Severity::Info),
    ("rollback.stopped", Severity::Critical),
    ("rollback.interrupted", Severity::Critical),
    ("rollback.resume", Severity::Info),
    ("rollback.retry", Severity::Info),
    ("rollback.skip", Severity::Warning),
    ("rollback.abort", Severity::Warning),
    ("rollback.done", Severity::Info),
    ("hook.alert", Severity::Critical),
];

/// The audit actions of `EVENTS`, for the outbox query.
pub fn actions() -> Vec<&'static str> {
    EVENTS.iter().map(|(a, _)| *a).collect()
}

/// One event as every receiver gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's name: the audit action, or `rollback.needs_approval`.
    pub name: String,
    pub severity: Severity,
    /// One line: what happened, to what, by whom.
    pub title: String,
    pub entry: AuditEntry,
}

impl Event {
    /// The event an audit entry stands for; None for entries that tell nothing (a refusal, a
    /// flag write that failed, an action that is not an event).
    pub fn of(entry: &AuditEntry) -> Option<Event> {
        let &(action, mut severity) = EVENTS.iter().find(|(a, _)| *a == entry.action)?;
        // Failures are events only where the failure is the news.
        let failure_is_news = matches!(action, "rollback.stopped" | "rollback.interrupted" | "flag.kill");
        match entry.outcome {
            Outcome::Done => {}
            Outcome::Failed if failure_is_news => {}
            _ => return None,
        }
        let mut name = action.to_string();
        if action == "rollback.start" && entry.outcome_detail.as_deref() == Some(AWAITING_APPROVAL) {
            name = "rollback.needs_approval".into();
            severity = Severity::Critical;
        }
        // A kill that could not be written: the loudest news there is.
        if action == "flag.kill" && entry.outcome == Outcome::Failed {
            name = "flag.kill_failed".into();
        }
        // What we send is bounded: each free text at most `MAX_FIELD` characters (a Slack block
        // takes 3,000; a receiver should never choke on a long guard detail or error).
        let mut entry = entry.clone();
        for field in [&mut entry.reason, &mut entry.outcome_detail, &mut entry.value_before, &mut entry.value_after] {
            if let Some(text) = field.as_mut() {
                capped(text);
            }
        }
        let title = title(&name, &entry);
        Some(Event { name, severity, title, entry })
    }

    /// The details below the title: the reason and the outcome's detail, when there are any.
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let e = &self.entry;
        let mut out = vec![("by", format!("{} ({})", e.actor, e.role))];
        if let Some(r) = &e.reason {
            out.push(("reason", r.clone()));
        }
        if let Some(d) = &e.outcome_detail {
            out.push(("detail", d.clone()));
        }
        out
    }
}

/// Characters of one free text in an event.
pub const MAX_FIELD: usize = 1500;

fn capped(text: &mut String) {
    if let Some((cut, _)) = text.char_indices().nth(MAX_FIELD) {
        text.truncate(cut);
        text.push_str(" … (cut)");
    }
}

fn title(name: &str, e: &AuditEntry) -> String {
    let before = e.value_before.as_deref().unwrap_or("?");
    let after = e.value_after.as_deref().unwrap_or("?");
    let target = if e.target.is_empty() { String::new() } else { format!(" ({})", e.target) };
    match name {
        "flag.set" => format!("Rollout changed {before} → {after} % by {}", e.actor),
        "flag.kill" => format!("Kill switch: rollout {before} → 0 % by {}", e.actor),
        "flag.kill_failed" => {
            format!("KILL FAILED: the rollout is still up; {} asked for 0 % and it could not be written", e.actor)
        }
        "flag.kill_retry" => format!("A pending kill landed: the rollout is at 0 % ({})", e.actor),
        "autopilot.check_blind" => format!("Autopilot's {after} check is blind: no doubled dose can be seen"),
        "flag.external_change" => format!("Flag changed outside the dashboard: {before} → {after}"),
        "autopilot.step" => format!("Autopilot stepped the rollout to {after}"),
        "autopilot.kill" => "Autopilot killed the rollout".into(),
        "autopilot.check_failing" => format!("Autopilot check {after} is failing"),
        "autopilot.dismiss" => format!("Autopilot check {after} dismissed by {}", e.actor),
        "rollback.needs_approval" => format!("Rollback{target} needs a second operator's approval"),
        "rollback.stopped" => format!("Rollback{target} stopped at a step"),
        "rollback.interrupted" => format!("Rollback{target} interrupted"),
        "hook.alert" => format!("Alert {after} acted on the rollout"),
        other => {
            let (what, verb) = other.split_once('.').unwrap_or((other, ""));
            let what = match what {
                "autopilot" => "Autopilot plan",
                "rollback" => "Rollback",
                _ => what,
            };
            format!("{what}{target}: {} by {}", verb.replace('_', " "), e.actor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, outcome: Outcome, detail: Option<&str>) -> AuditEntry {
        AuditEntry {
            id: 7,
            at: chrono::Utc::now(),
            actor: "ana".into(),
            role: "operator".into(),
            action: action.into(),
            target: "rollback run #3".into(),
            value_before: Some("25".into()),
            value_after: Some("50".into()),
            reason: Some("step two".into()),
            outcome,
            outcome_detail: detail.map(str::to_string),
            request_id: None,
        }
    }

    #[test]
    fn what_is_sent_is_bounded() {
        let long = "é".repeat(MAX_FIELD * 4);
        let e = Event::of(&entry("flag.kill", Outcome::Failed, Some(&long))).unwrap();
        let detail = e.entry.outcome_detail.unwrap();
        assert!(detail.chars().count() <= MAX_FIELD + 8 && detail.ends_with("(cut)"), "{}", detail.len());
        let short = Event::of(&entry("flag.kill", Outcome::Failed, Some("no answer"))).unwrap();
        assert_eq!(short.entry.outcome_detail.as_deref(), Some("no answer"));
    }

    #[test]
    fn entries_become_events_with_their_severity_and_refusals_do_not() {
        let e = Event::of(&entry("flag.set", Outcome::Done, None)).unwrap();
        assert_eq!((e.name.as_str(), e.severity), ("flag.set", Severity::Info));
        assert_eq!(e.title, "Rollout changed 25 → 50 % by ana");
        assert!(Event::of(&entry("flag.set", Outcome::Refused, None)).is_none());
        assert!(Event::of(&entry("flag.set", Outcome::Failed, Some("interrupted"))).is_none());
        assert!(Event::of(&entry("session.login", Outcome::Done, None)).is_none());
        let stopped = Event::of(&entry("rollback.stopped", Outcome::Failed, Some("step 3 failed"))).unwrap();
        assert_eq!(
            (stopped.severity, stopped.title.as_str()),
            (Severity::Critical, "Rollback (rollback run #3) stopped at a step")
        );
        let kill = Event::of(&entry("flag.kill", Outcome::Done, None)).unwrap();
        assert_eq!(kill.severity, Severity::Critical);
    }

    #[test]
    fn a_run_waiting_for_approval_is_its_own_critical_event() {
        let e = Event::of(&entry("rollback.start", Outcome::Done, Some(AWAITING_APPROVAL))).unwrap();
        assert_eq!((e.name.as_str(), e.severity), ("rollback.needs_approval", Severity::Critical));
        let plain = Event::of(&entry("rollback.start", Outcome::Done, None)).unwrap();
        assert_eq!((plain.name.as_str(), plain.severity), ("rollback.start", Severity::Warning));
        assert_eq!(plain.title, "Rollback (rollback run #3): start by ana");
    }
}
