//! Which audit entries are events worth telling, how much each matters, and the sentence that
//! tells it. The audit trail is the outbox (see the migration `notify`): an event is an entry.

use crate::api::audit::{Action, AuditEntry, Outcome, AWAITING_APPROVAL, FLAG_KILL_FAILED, ROLLBACK_NEEDS_APPROVAL};

use super::super::config::Severity;

/// The audit actions that are events (those with a severity in [`Action`]), for the outbox query.
pub fn actions() -> Vec<&'static str> {
    Action::ALL.iter().filter(|a| a.severity().is_some()).map(|a| a.as_str()).collect()
}

/// One event as every receiver gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's name: the audit action's, `rollback.needs_approval` or `flag.kill_failed`.
    pub name: &'static str,
    /// The audit action it comes from.
    pub action: Action,
    pub severity: Severity,
    /// One line: what happened, to what, by whom.
    pub title: String,
    pub entry: AuditEntry,
}

impl Event {
    /// The event an audit entry stands for; None for entries that tell nothing (a refusal, a
    /// flag write that failed, an action that is not an event).
    pub fn of(entry: &AuditEntry) -> Option<Event> {
        let action = entry.action()?;
        let mut severity = action.severity()?;
        // Failures are events only where the failure is the news.
        let failure_is_news =
            matches!(action, Action::RollbackStopped | Action::RollbackInterrupted | Action::FlagKill);
        match entry.outcome {
            Outcome::Done => {}
            Outcome::Failed if failure_is_news => {}
            _ => return None,
        }
        let mut name = action.as_str();
        if action == Action::RollbackStart && entry.outcome_detail.as_deref() == Some(AWAITING_APPROVAL) {
            (name, severity) = ROLLBACK_NEEDS_APPROVAL;
        }
        // A kill that could not be written: the loudest news there is.
        if action == Action::FlagKill && entry.outcome == Outcome::Failed {
            (name, severity) = FLAG_KILL_FAILED;
        }
        // What we send is bounded: each free text at most `MAX_FIELD` characters (a Slack block
        // takes 3,000; a receiver should never choke on a long guard detail or error).
        let mut entry = entry.clone();
        for field in [&mut entry.reason, &mut entry.outcome_detail, &mut entry.value_before, &mut entry.value_after] {
            if let Some(text) = field.as_mut() {
                capped(text);
            }
        }
        let title = title(action, name, &entry);
        Some(Event { name, action, severity, title, entry })
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

fn title(action: Action, name: &str, e: &AuditEntry) -> String {
    let before = e.value_before.as_deref().unwrap_or("?");
    let after = e.value_after.as_deref().unwrap_or("?");
    let target = if e.target.is_empty() { String::new() } else { format!(" ({})", e.target) };
    if name == FLAG_KILL_FAILED.0 {
        return format!("KILL FAILED: the rollout is still up; {} asked for 0 % and it could not be written", e.actor);
    }
    if name == ROLLBACK_NEEDS_APPROVAL.0 {
        return format!("Rollback{target} needs a second operator's approval");
    }
    match action {
        Action::FlagSet => format!("Rollout changed {before} → {after} % by {}", e.actor),
        Action::FlagKill => format!("Kill switch: rollout {before} → 0 % by {}", e.actor),
        Action::FlagKillRetry => format!("A pending kill landed: the rollout is at 0 % ({})", e.actor),
        Action::AutopilotCheckBlind => format!("Autopilot's {after} check is blind: no doubled dose can be seen"),
        Action::FlagExternalChange => format!("Flag changed outside the dashboard: {before} → {after}"),
        Action::AutopilotStep => format!("Autopilot stepped the rollout to {after}"),
        Action::AutopilotKill => "Autopilot killed the rollout".into(),
        Action::AutopilotCheckFailing => format!("Autopilot check {after} is failing"),
        Action::AutopilotDismiss => format!("Autopilot check {after} dismissed by {}", e.actor),
        Action::RollbackStopped => format!("Rollback{target} stopped at a step"),
        Action::RollbackInterrupted => format!("Rollback{target} interrupted"),
        Action::HookAlert => format!("Alert {after} acted on the rollout"),
        other => {
            let name = other.as_str();
            let (what, verb) = name.split_once('.').unwrap_or((name, ""));
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

    fn entry(action: Action, outcome: Outcome, detail: Option<&str>) -> AuditEntry {
        entry_named(action.as_str(), outcome, detail)
    }

    fn entry_named(action: &str, outcome: Outcome, detail: Option<&str>) -> AuditEntry {
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
            run_id: None,
            plan_id: None,
        }
    }

    #[test]
    fn what_is_sent_is_bounded() {
        let long = "é".repeat(MAX_FIELD * 4);
        let e = Event::of(&entry(Action::FlagKill, Outcome::Failed, Some(&long))).unwrap();
        let detail = e.entry.outcome_detail.unwrap();
        assert!(detail.chars().count() <= MAX_FIELD + 8 && detail.ends_with("(cut)"), "{}", detail.len());
        let short = Event::of(&entry(Action::FlagKill, Outcome::Failed, Some("no answer"))).unwrap();
        assert_eq!(short.entry.outcome_detail.as_deref(), Some("no answer"));
    }

    #[test]
    fn entries_become_events_with_their_severity_and_refusals_do_not() {
        let e = Event::of(&entry(Action::FlagSet, Outcome::Done, None)).unwrap();
        assert_eq!((e.name, e.severity), (Action::FlagSet.as_str(), Severity::Info));
        assert_eq!(e.title, "Rollout changed 25 → 50 % by ana");
        assert!(Event::of(&entry(Action::FlagSet, Outcome::Refused, None)).is_none());
        assert!(Event::of(&entry(Action::FlagSet, Outcome::Failed, Some("interrupted"))).is_none());
        assert!(Event::of(&entry_named("session.login", Outcome::Done, None)).is_none(), "no action of ours");
        assert!(Event::of(&entry(Action::DeployRecord, Outcome::Done, None)).is_none(), "an action, no event");
        let stopped = Event::of(&entry(Action::RollbackStopped, Outcome::Failed, Some("step 3 failed"))).unwrap();
        assert_eq!(
            (stopped.severity, stopped.title.as_str()),
            (Severity::Critical, "Rollback (rollback run #3) stopped at a step")
        );
        let kill = Event::of(&entry(Action::FlagKill, Outcome::Done, None)).unwrap();
        assert_eq!(kill.severity, Severity::Critical);
    }

    #[test]
    fn a_run_waiting_for_approval_is_its_own_critical_event() {
        let e = Event::of(&entry(Action::RollbackStart, Outcome::Done, Some(AWAITING_APPROVAL))).unwrap();
        assert_eq!((e.name, e.severity), ROLLBACK_NEEDS_APPROVAL);
        let plain = Event::of(&entry(Action::RollbackStart, Outcome::Done, None)).unwrap();
        assert_eq!((plain.name, plain.severity), (Action::RollbackStart.as_str(), Severity::Warning));
        assert_eq!(plain.title, "Rollback (rollback run #3): start by ana");
    }
}
