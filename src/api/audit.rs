//! The audit trail as pages and API clients see it, and the one vocabulary of its actions: every
//! audit action is spelled once, in [`Action`], with what it means as an event (its severity, its
//! title, whether it marks a chart). The state database's CHECK constraint lists the same names
//! (`tests/events.rs` compares them), and no other file spells one (the same test greps `src/`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How much an event matters; receivers take events at or above their `min_severity`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Declares [`Action`] from one line per action: its name, its severity as an event (`-`: not
/// an event), whether it marks the autopilot's charts, and the audit page's short label.
macro_rules! actions {
    ($($variant:ident = $name:literal, $severity:tt, $chart:literal, $label:literal;)+) => {
        /// Every action the audit trail records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Action {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Action::$variant => $name,)+ }
            }

            pub fn parse(name: &str) -> Option<Action> {
                match name { $($name => Some(Action::$variant),)+ _ => None }
            }

            /// How much it matters as an event to receivers; None: it is no event.
            pub fn severity(self) -> Option<Severity> {
                match self { $(Action::$variant => actions!(@severity $severity),)+ }
            }

            /// Whether it is drawn as a marker on the autopilot's charts.
            pub fn marks_chart(self) -> bool {
                match self { $(Action::$variant => $chart,)+ }
            }

            /// A few words for the audit page's filters and tables.
            pub fn label(self) -> &'static str {
                match self { $(Action::$variant => $label,)+ }
            }
        }
    };
    (@severity -) => { None };
    (@severity $s:ident) => { Some(Severity::$s) };
}

actions! {
    FlagSet = "flag.set", Info, false, "percentage set";
    FlagKill = "flag.kill", Critical, false, "kill switch";
    FlagKillRetry = "flag.kill_retry", Critical, false, "pending kill landed";
    FlagExternalChange = "flag.external_change", Warning, false, "changed outside";
    AutopilotStart = "autopilot.start", Info, true, "plan started";
    AutopilotStep = "autopilot.step", Info, false, "plan stepped";
    AutopilotPause = "autopilot.pause", Warning, true, "plan paused";
    AutopilotResume = "autopilot.resume", Info, true, "plan resumed";
    AutopilotCheckFailing = "autopilot.check_failing", Warning, false, "check failing";
    AutopilotCheckBlind = "autopilot.check_blind", Critical, false, "check blind";
    AutopilotPromote = "autopilot.promote", -, false, "promote asked";
    AutopilotDismiss = "autopilot.dismiss", Warning, true, "check dismissed";
    AutopilotKill = "autopilot.kill", Critical, true, "plan killed";
    AutopilotEnd = "autopilot.end", Warning, true, "plan ended";
    AutopilotAbort = "autopilot.abort", Warning, true, "plan aborted";
    AutopilotDone = "autopilot.done", Info, true, "plan done";
    RollbackStart = "rollback.start", Warning, false, "rollback started";
    RollbackApprove = "rollback.approve", Info, false, "rollback approved";
    RollbackStep = "rollback.step", -, false, "rollback step";
    RollbackStopped = "rollback.stopped", Critical, false, "rollback stopped";
    RollbackInterrupted = "rollback.interrupted", Critical, false, "rollback interrupted";
    RollbackResume = "rollback.resume", Info, false, "rollback resumed";
    RollbackRetry = "rollback.retry", Info, false, "step retried";
    RollbackSkip = "rollback.skip", Warning, false, "step skipped";
    RollbackAbort = "rollback.abort", Warning, false, "rollback aborted";
    RollbackDone = "rollback.done", Info, false, "rollback done";
    RollbackScaleBack = "rollback.scale_back", -, false, "writers scaled back";
    RollbackReapply = "rollback.reapply", Warning, false, "split values re-applied";
    RollbackRehearse = "rollback.rehearse", Warning, false, "rollback rehearsed";
    DeployRecord = "deploy.record", -, false, "deploy recorded";
    HookAlert = "hook.alert", Critical, false, "alert acted on";
    NotifyResend = "notify.resend", -, false, "notification resent";
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events that are no action of their own, but what an entry of one tells: a rollback start
/// waiting for a second operator, and a kill that could not be written.
pub const ROLLBACK_NEEDS_APPROVAL: (&str, Severity) = ("rollback.needs_approval", Severity::Critical);
pub const FLAG_KILL_FAILED: (&str, Severity) = ("flag.kill_failed", Severity::Critical);

/// The start entry's detail when the run waits for a second operator (notifications tell it
/// apart from a start that runs at once, as `ROLLBACK_NEEDS_APPROVAL`).
pub const AWAITING_APPROVAL: &str = "waiting for a second operator's approval";

/// The autopilot's audit actions drawn as markers on the rollout charts. Its steps are not among
/// them: a step is a flag change, drawn as one already (by `autopilot`).
pub fn chart_markers() -> Vec<&'static str> {
    Action::ALL.iter().filter(|a| a.marks_chart()).map(|a| a.as_str()).collect()
}

/// Every event name a receiver can ask for: the actions that are events and the two above.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    Action::ALL
        .iter()
        .filter(|a| a.severity().is_some())
        .map(|a| a.as_str())
        .chain([ROLLBACK_NEEDS_APPROVAL.0, FLAG_KILL_FAILED.0])
}

/// The flag's own writes through the dashboard (a person's, the autopilot's, the kill retry's).
pub const FLAG_WRITES: [Action; 3] = [Action::FlagSet, Action::FlagKill, Action::FlagKillRetry];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// An entry as stored. Its `action` is text: rows written before an action was renamed keep
/// their name; [`AuditEntry::action`] reads it as an [`Action`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub value_before: Option<String>,
    pub value_after: Option<String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    /// Why it was refused or failed.
    pub outcome_detail: Option<String>,
    pub request_id: Option<String>,
    /// The rollback run it is about (typed: never parsed from `target`).
    #[serde(default)]
    pub run_id: Option<i64>,
    /// The autopilot plan it is about.
    #[serde(default)]
    pub plan_id: Option<i64>,
}

impl AuditEntry {
    /// The entry's action, if it is one this version knows.
    pub fn action(&self) -> Option<Action> {
        Action::parse(&self.action)
    }
}
