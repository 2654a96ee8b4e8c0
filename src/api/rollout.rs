//! Rollout control as pages and API clients see it.

use serde::{Deserialize, Serialize};

use super::auth::Identity;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub key: String,
    pub source: String,
    pub percentage: Option<u8>,
    pub raw: Option<String>,
    /// The version a change must name (`expected_version`), so that nothing is overwritten blindly.
    pub version: Option<String>,
    /// False when the stored value is in a format the dashboard will not rewrite.
    pub writable: bool,
    /// The preconditions for an increase (on the wire each is `{name, passed, reason}`).
    #[serde(with = "super::check::as_guards")]
    pub guards: Vec<super::check::Check>,
}

/// `POST /api/v1/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPercentage {
    pub percentage: i64,
    pub reason: String,
    pub expected_version: String,
    #[serde(default)]
    pub override_guards: bool,
    /// Required when `override_guards` is true and a guard fails.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// `POST /api/v1/rollout/kill` (the body may be left out: a bare kill is a kill).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeDone {
    pub before: String,
    pub after: String,
    pub version: Option<String>,
    pub audit_id: i64,
    /// The failed guards that were overridden, and the operator's reason for it.
    pub overridden: Option<String>,
    /// Set when the write went through but reading the flag back failed: written, not confirmed
    /// (the sentence says why; reload to see the flag).
    #[serde(default)]
    pub unconfirmed: Option<String>,
}

/// The rollout page's data: the flag with its guards, and who is looking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub state: Result<RolloutState, String>,
    pub me: Option<Identity>,
    /// Where the flag lives, for the confirmation dialog.
    pub target: String,
}

/// A kill asked for whose write has not landed: retried every round until it does, and shown in
/// red on the overview and the autopilot page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingKill {
    pub id: i64,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub reason: Option<String>,
    pub attempts: i32,
    pub last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
}

impl PendingKill {
    /// The red line pages show.
    pub fn sentence(&self) -> String {
        format!(
            "KILL NOT LANDED: {} asked for 0 % at {} UTC and the flag could not be written ({} attempt(s); last error: {}). \
             It is retried every round and nothing raises the flag until it lands; set it to 0 by hand if this lasts.",
            self.actor,
            self.requested_at.format("%Y-%m-%d %H:%M:%S"),
            self.attempts,
            self.last_error.as_deref().unwrap_or("none yet")
        )
    }
}
