//! Conditions: what holds now and must be told until it stops holding (the rollout killed, a
//! kill that has not landed, the autopilot paused or a check failing, a rollback run stopped or
//! waiting for approval). Each domain states its own (`rollout`'s in `kill_requests`,
//! `autopilot::facts`, `rollback::facts`); `holding` collects them, and the Alertmanager receiver
//! (`notify::alerting`) holds an alert for each.

use std::collections::BTreeMap;

use super::config::Severity;

pub mod holding;

/// One condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub alertname: &'static str,
    pub severity: Severity,
    /// Labels beyond the common ones (the plan, the check, the run).
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
}

impl Condition {
    pub fn new(alertname: &'static str, severity: Severity, summary: String, description: String) -> Condition {
        Condition { alertname, severity, labels: BTreeMap::new(), summary, description }
    }

    pub fn label(mut self, k: &str, v: impl ToString) -> Condition {
        self.labels.insert(k.into(), v.to_string());
        self
    }
}
