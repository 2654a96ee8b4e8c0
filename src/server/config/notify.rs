//! Settings of the notifications (`[notify]`) and of the inbound alert hook (`[hooks]`). Secrets
//! (HMAC keys, tokens, Slack URLs) are never in the file: it names the environment variables
//! that hold them, and `Config` reads those.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    pub receivers: Vec<ReceiverSettings>,
    /// Back-off after a failed delivery: doubles from `retry_min_secs` up to `retry_max_secs`
    /// (a receiver's `Retry-After` is honoured within that ceiling).
    pub retry_min_secs: Option<u64>,
    pub retry_max_secs: Option<u64>,
    /// Failed attempts in a row after which an event is set aside as a dead letter, so that the
    /// events behind it go on (20: about an hour and a half at the default back-off).
    pub dead_letter_after: Option<u32>,
}

impl NotifySettings {
    pub fn retry_bounds(&self) -> (u64, u64) {
        (self.retry_min_secs.unwrap_or(1), self.retry_max_secs.unwrap_or(300))
    }

    pub fn dead_letter_after(&self) -> u32 {
        self.dead_letter_after.unwrap_or(20).max(1)
    }
}

pub use crate::api::audit::Severity;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSettings {
    /// Shown on the page and in the counters; lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// Its kind, by name: `webhook`, `slack`, `grafana` or `alertmanager` (`notify/kinds/`; an
    /// unknown kind is refused at start).
    pub kind: String,
    /// The receiver's URL (Alertmanager and Grafana: the base URL). Either this or `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL, when the URL is itself a secret (Slack's).
    #[serde(default)]
    pub url_env: Option<String>,
    /// The environment variable holding the webhook's HMAC key or Grafana's token.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The events wanted: audit actions such as `flag.kill`, or `autopilot.*` (default: all).
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub min_severity: Severity,
    /// Per request (default 5 s).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Alertmanager: how often holding alerts are posted again (default 60 s, as Prometheus).
    #[serde(default)]
    pub resend_secs: Option<u64>,
}

impl ReceiverSettings {
    /// Whether this receiver wants `event` (an audit action) at `severity`. A kill that could
    /// not be written goes to every receiver, whatever its filters: somebody must act now.
    pub fn wants(&self, event: &str, severity: Severity) -> bool {
        if event == crate::api::audit::FLAG_KILL_FAILED.0 {
            return true;
        }
        severity >= self.min_severity
            && (self.events.is_empty() || self.events.iter().any(|p| super::validate::event_matches(p, event)))
    }

    pub fn resend(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.resend_secs.unwrap_or(60).max(1))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(5))
    }

    /// The environment variables this receiver reads.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.url_env.iter().chain(self.secret_env.iter()).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    pub alertmanager: AlertHookSettings,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertHookSettings {
    /// The environment variable holding the bearer token Alertmanager sends (unset: the hook
    /// answers 503 and does nothing).
    pub token_env: String,
    /// What a firing alert may do, by the labels it carries. Off unless a rule says so.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertHookSettings {
    fn default() -> Self {
        AlertHookSettings { token_env: "ROLLOUT_ALERT_HOOK_TOKEN".into(), rules: vec![] }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Every one of these labels must be on the alert, with this value.
    #[serde(rename = "match")]
    pub match_labels: BTreeMap<String, String>,
    pub action: HookAction,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// The flag to 0 % through the kill switch.
    Kill,
    /// Pause the running autopilot plan.
    PauseAutopilot,
    /// Record the alert in the audit trail and do nothing else.
    Record,
}

impl HookAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HookAction::Kill => "kill",
            HookAction::PauseAutopilot => "pause_autopilot",
            HookAction::Record => "record",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::audit::Action;

    #[test]
    fn a_receiver_takes_its_events_at_or_above_its_severity() {
        let r = ReceiverSettings {
            name: "pager".into(),
            kind: "webhook".into(),
            url: Some("http://x".into()),
            url_env: None,
            secret_env: None,
            events: vec![Action::FlagKill.as_str().into(), "autopilot.*".into()],
            min_severity: Severity::Warning,
            timeout_secs: None,
            resend_secs: None,
        };
        assert!(r.wants(Action::FlagKill.as_str(), Severity::Critical));
        assert!(r.wants(Action::AutopilotPause.as_str(), Severity::Warning));
        assert!(!r.wants(Action::AutopilotStep.as_str(), Severity::Info), "below the severity");
        assert!(!r.wants(Action::FlagSet.as_str(), Severity::Critical), "not among the events");
        let all = ReceiverSettings { events: vec![], min_severity: Severity::Info, ..r };
        assert!(all.wants(Action::RollbackStart.as_str(), Severity::Info));
    }

    #[test]
    fn receivers_and_rules_are_checked_at_start() {
        use super::super::Settings;
        let one = |extra: &str| format!("[[notify.receivers]]\nname = \"pager\"\nkind = \"webhook\"\n{extra}");
        assert!(Settings::from_toml(&one("url = \"https://hooks.example/x\"")).is_ok());
        let refused = |toml: &str| Settings::from_toml(toml).unwrap_err().to_string();
        assert!(refused(&one("")).contains("either url or url_env"));
        assert!(refused(&one("url = \"ftp://x\"")).contains("http(s)"));
        let two = format!("{}{}", one("url = \"http://a\"\n"), one("url = \"http://b\"\n"));
        assert!(refused(&two).contains("two receivers have this name"));
        // What each kind needs (Grafana's token, Alertmanager's conditions) is its own check,
        // made when the receivers start: notify::kinds::tests::each_kind_checks_its_settings_at_start.
        let rule = "[[hooks.alertmanager.rules]]\nmatch = {}\naction = \"kill\"\n";
        assert!(refused(rule).contains("at least one label"));
    }
}
