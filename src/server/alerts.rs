//! The rollout's alerts: Prometheus's firing and pending alerts that carry the configured labels.

use crate::api::alerts::Alert;

use super::error::SourceError;
use super::state::AppState;

/// Whether a rollout alert is firing, as the rollout's guard and the autopilot's `alerts` check
/// both say it: the sentence, and the names of those firing.
pub fn firing(alerts: &[Alert]) -> (Vec<&str>, String) {
    let names: Vec<&str> = alerts.iter().filter(|a| a.state == "firing").map(|a| a.name.as_str()).collect();
    let said = if names.is_empty() {
        "no rollout alert is firing".to_string()
    } else {
        format!("firing: {}", names.join(", "))
    };
    (names, said)
}

pub async fn rollout_alerts(state: &AppState) -> Result<Vec<Alert>, SourceError> {
    let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
    let wanted = &state.settings.alerts.match_labels;
    let mut alerts: Vec<Alert> = prom
        .alerts()
        .await?
        .into_iter()
        .filter(|a| wanted.iter().all(|(k, v)| a.labels.get(k) == Some(v)))
        .map(|a| Alert {
            name: a.labels.get("alertname").cloned().unwrap_or_else(|| "(unnamed)".into()),
            state: a.state,
            severity: a.labels.get("severity").cloned(),
            summary: a.annotations.get("summary").cloned(),
            active_at: a.active_at,
            labels: a.labels,
        })
        .collect();
    // Firing first, then the longest active.
    alerts.sort_by_key(|a| (a.state != "firing", a.active_at));
    Ok(alerts)
}
