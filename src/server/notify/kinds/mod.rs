//! The kinds of notification receiver. Each is one file implementing [`Kind`], listed once in
//! [`KINDS`]; the settings name it (`kind = "slack"`), and everything else (the outbox, the
//! Alertmanager loop, the page) asks it through this trait.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;

use super::super::config::ReceiverSettings;
use super::super::error::SourceError;
use super::event::Event;
use super::receivers::{Answer, Origin, Receiver};

/// Declares each kind's file and lists the kind in [`KINDS`], from one line per kind.
macro_rules! kinds {
    ($($file:ident => $kind:ident),+ $(,)?) => {
        $(pub mod $file;)+
        /// Every kind, by the name the settings use.
        pub const KINDS: &[&dyn Kind] = &[$(&$file::$kind),+];
    };
}

// A new kind is a file of this directory implementing [`Kind`], and one line here.
kinds! {
    webhook => Webhook,
    slack => Slack,
    grafana => Grafana,
    alertmanager => Alertmanager,
}

/// One kind of receiver.
pub trait Kind: Sync {
    /// Its name in the settings and on the page.
    fn name(&self) -> &'static str;
    /// True for a receiver told conditions (alerts held while they hold), never events.
    fn holds_conditions(&self) -> bool {
        false
    }
    /// What its settings must say beyond the common rules, checked at start.
    fn check(&self, _settings: &ReceiverSettings) -> Result<(), String> {
        Ok(())
    }
    /// Delivers one event.
    fn deliver<'a>(&'a self, d: Delivery<'a>) -> Sending<'a>;
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One event on its way to one receiver.
pub struct Delivery<'a> {
    /// The state database, for a kind that keeps something between deliveries (Grafana's regions).
    pub db: &'a PgPool,
    pub receiver: &'a Receiver,
    pub event: &'a Event,
    pub origin: &'a Origin,
}

/// A delivery under way, boxed so the kinds can sit in one list.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<Answer, SourceError>> + Send + 'a>>;

/// The kind `settings` name, checked: known, its common rules and its own.
pub fn checked(settings: &ReceiverSettings) -> Result<&'static dyn Kind, String> {
    let what = format!("notify.receivers {:?}", settings.name);
    let Some(kind) = named(&settings.kind) else {
        let known: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        return Err(format!("{what}: kind {:?} is not one of {}", settings.kind, known.join(", ")));
    };
    if kind.holds_conditions() && !settings.events.is_empty() {
        return Err(format!(
            "{what}: {} gets alerts by condition (killed, paused, failing, stopped), not events; remove events \
             (min_severity still applies)",
            kind.name()
        ));
    }
    if !kind.holds_conditions() && settings.resend_secs.is_some() {
        return Err(format!("{what}: resend_secs is only for receivers that hold alerts (alertmanager)"));
    }
    kind.check(settings).map_err(|e| format!("{what}: {e}"))?;
    Ok(kind)
}

/// The kind called `name`.
pub fn named(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The kind of a receiver that started (its settings were checked then).
pub fn of(r: &Receiver) -> &'static dyn Kind {
    named(&r.settings.kind).unwrap_or(&Unknown)
}

/// What `of` answers for a name no kind has (never, for a receiver that started).
struct Unknown;

impl Kind for Unknown {
    fn name(&self) -> &'static str {
        "unknown"
    }

    fn deliver<'a>(&'a self, _: Delivery<'a>) -> Sending<'a> {
        Box::pin(async { Ok(Answer::Rejected { status: 0, detail: "unknown receiver kind".into() }) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::config::Severity;
    use super::*;

    pub fn settings(kind: &str) -> ReceiverSettings {
        ReceiverSettings {
            name: "r".into(),
            kind: kind.into(),
            url: Some("http://x".into()),
            url_env: None,
            secret_env: None,
            events: vec![],
            min_severity: Severity::Info,
            timeout_secs: None,
            resend_secs: None,
        }
    }

    #[test]
    fn each_kind_checks_its_settings_at_start() {
        assert!(checked(&settings("webhook")).is_ok());
        assert!(checked(&settings("pigeon"))
            .unwrap_err()
            .contains("is not one of webhook, slack, grafana, alertmanager"));
        assert!(checked(&settings("grafana")).unwrap_err().contains("service-account token"));
        let grafana = ReceiverSettings { secret_env: Some("GRAFANA_TOKEN".into()), ..settings("grafana") };
        assert!(checked(&grafana).is_ok());
        assert!(checked(&settings("alertmanager")).is_ok());
        let am = ReceiverSettings {
            events: vec![crate::api::audit::Action::FlagKill.as_str().into()],
            ..settings("alertmanager")
        };
        assert!(checked(&am).unwrap_err().contains("alerts by condition"));
        let resend = ReceiverSettings { resend_secs: Some(5), ..settings("webhook") };
        assert!(checked(&resend).unwrap_err().contains("only for receivers that hold alerts"));
    }
}
