//! Notifications as pages and API clients see them: each receiver's state and the recent
//! delivery attempts (`GET /api/v1/notifications`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One receiver: what it takes, and how its deliveries are going.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverState {
    pub name: String,
    /// `webhook`, `slack`, `alertmanager` or `grafana`.
    pub kind: String,
    /// The events it takes (empty: all).
    pub events: Vec<String>,
    pub min_severity: String,
    /// Why it cannot send at all (a secret it names is not set), if so.
    pub unusable: Option<String>,
    /// Events waiting for it.
    pub due: i64,
    /// Alertmanager: the alerts it holds firing now (their names).
    #[serde(default)]
    pub firing: Vec<String>,
    pub delivered: i64,
    /// Events it refused with a 4xx (not sent again).
    pub rejected: i64,
    /// Events set aside after failing `notify.dead_letter_after` times in a row.
    #[serde(default)]
    pub dead: i64,
    /// Since when its deliveries have been failing (None: the last one went through).
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub receiver: String,
    /// The audit entry told about (None: an Alertmanager alert's state).
    pub audit_id: Option<i64>,
    pub event: String,
    pub severity: String,
    pub attempt: i32,
    pub ok: bool,
    pub status: Option<i32>,
    pub detail: Option<String>,
    pub millis: i32,
}

/// An event a receiver failed to take `notify.dead_letter_after` times in a row, set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub receiver: String,
    pub audit_id: i64,
    pub event: String,
    /// When it was set aside.
    pub at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// `POST /api/v1/notifications/{receiver}/resend`: a dead letter due again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resend {
    pub audit_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationsView {
    pub receivers: Vec<ReceiverState>,
    pub attempts: Vec<DeliveryAttempt>,
    /// The newest dead letters (every receiver's), newest first.
    #[serde(default)]
    pub dead_letters: Vec<DeadLetter>,
}
