//! The one owner of background work: every task that runs by itself (replaying the audit journal,
//! retrying pending kills, the autopilot's rounds, watching the deploy journal, pruning) is started
//! here with a name and a pace, and shares one error policy: a failed round is logged once when a
//! failing streak starts (then at debug level), its recovery once, and `/metrics` shows each task's
//! rounds and whether its latest failed (`rollout_dashboard_background_rounds`, `_failing`). The
//! rounds themselves live with their domain and decide nothing about pacing or logging.
//!
//! Not here (yet): the flag observer, which keeps its last reading between rounds, and each
//! notification receiver's loop, whose pace is its own back-off.

use std::future::Future;
use std::time::Duration;

use super::state::AppState;

/// Starts `round` every `pace` for as long as the process lives.
pub fn every<F, Fut>(state: &AppState, task: &'static str, pace: Duration, mut round: F)
where
    F: FnMut(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let result = round(state.clone()).await;
            let ok = result.is_ok();
            state.services.metrics.background_round(task, ok);
            match (result, failing) {
                (Ok(()), true) => tracing::info!(task, "background task recovered"),
                (Err(e), false) => tracing::warn!(task, "background task failed: {e}; tried again every {pace:?}"),
                (Err(e), true) => tracing::debug!(task, "background task still failing: {e}"),
                (Ok(()), false) => {}
            }
            failing = !ok;
        }
    });
}

/// Every background task of a replica, started once at start-up.
pub fn start(state: &AppState) {
    let s = &state.settings;
    let refresh = s.refresh_interval();
    every(
        state,
        "audit-journal-replay",
        refresh,
        |state| async move { super::audit_journal::replay_round(&state).await },
    );
    let autopilot = Duration::from_secs(s.autopilot.interval_secs.unwrap_or(s.refresh_interval_secs));
    every(state, "kill-retry", autopilot, |state| async move {
        super::kill_requests::retry(&state).await.map_err(|e| e.to_string())
    });
    every(state, "autopilot-round", autopilot, |state| async move {
        super::autopilot::tick(&state).await.map_err(|e| e.to_string())
    });
    every(state, "deploy-journal", refresh, |state| async move {
        super::rollback::deploys::observe_once(&state).await.map_err(|e| e.to_string())
    });
    every(state, "retention", super::retention::EVERY, |state| async move {
        super::retention::prune_round(&state.state_db, state.settings.retention_days).await
    });
}

#[cfg(test)]
mod tests {
    use super::super::own_metrics::OwnMetrics;

    #[test]
    fn a_tasks_rounds_and_failing_state_are_in_the_metrics() {
        let m = OwnMetrics::default();
        m.background_round("kill-retry", false);
        assert!(m.render().contains("rollout_dashboard_background_failing{task=\"kill-retry\"} 1"));
        m.background_round("kill-retry", true);
        let text = m.render();
        assert!(text.contains("rollout_dashboard_background_rounds_total{task=\"kill-retry\"} 2"), "{text}");
        assert!(text.contains("rollout_dashboard_background_failing{task=\"kill-retry\"} 0"), "{text}");
    }
}
