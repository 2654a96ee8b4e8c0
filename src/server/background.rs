//! The one owner of background work: every task that runs by itself (replaying the audit journal,
//! retrying pending kills, the autopilot's rounds, watching the deploy journal, pruning) is started
//! here with a name and a pace, and shares one error policy: a failed round is logged once when a
//! failing streak starts (then at debug level), its recovery once, and `/metrics` shows each task's
//! rounds and whether its latest failed (`rollout_dashboard_background_rounds`, `_failing`). The
//! rounds themselves live with their domain and decide nothing about pacing or logging.
//!
//! The flag observer keeps what it saw last between its rounds (`FlagObserver`). Each
//! notification receiver's loop paces itself (its back-off is the receiver's): it runs under
//! `supervise`, which names it, restarts it if it ever ends or panics, and shows in `/metrics`
//! whether it runs. Nothing else in the server spawns work that outlives a request, except the
//! kills a request hands over (`rollout::kill`) and a started rollback run's executor.

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

/// How long a restarted loop must run before it counts as recovered (and its back-off resets).
const STEADY: Duration = Duration::from_secs(60);
/// The longest wait before a loop that keeps ending is started again.
const MOST_BACK_OFF: Duration = Duration::from_secs(60);

/// Runs the long-lived loop `run` makes under the name `task`, started again whenever it ends or
/// panics: after a second, doubling up to a minute while it keeps ending within a minute of its
/// start. `/metrics` counts its restarts (`rollout_dashboard_background_rounds_total`) and shows
/// it failing from an end until it has run a minute again.
pub fn supervise<F, Fut>(state: &AppState, task: String, mut run: F)
where
    F: FnMut(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    tokio::spawn(async move {
        let metrics = state.services.metrics.clone();
        metrics.background_loop(&task, true);
        let mut back_off = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            let mut running = tokio::spawn(run(state.clone()));
            let ended = tokio::select! {
                ended = &mut running => ended,
                () = tokio::time::sleep(STEADY) => {
                    metrics.background_loop(&task, true);
                    running.await
                }
            };
            metrics.background_round(&task, false);
            match ended {
                Ok(()) => tracing::error!(task, "background loop ended; started again in {back_off:?}"),
                Err(e) => tracing::error!(task, "background loop failed: {e}; started again in {back_off:?}"),
            }
            tokio::time::sleep(back_off).await;
            back_off =
                if started.elapsed() >= STEADY { Duration::from_secs(1) } else { (back_off * 2).min(MOST_BACK_OFF) };
        }
    });
}

/// Every background task of a replica, started once at start-up.
pub fn start(state: &AppState) {
    let s = &state.settings;
    let refresh = s.refresh_interval();
    every(state, "audit-journal-replay", refresh, |state| async move { replay_journal(&state).await });
    observe_flag(state);
    let autopilot = Duration::from_secs(s.autopilot.interval_secs.unwrap_or(s.refresh_interval_secs));
    every(state, "kill-retry", autopilot, |state| async move {
        super::rollout::retry_kills(&state).await.map_err(|e| e.to_string())
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
    start_receivers(state);
    let state = state.clone();
    tokio::spawn(async move { super::rollback::recover(&state).await });
}

/// The flag observer (`flag_history::FlagObserver`), a round every refresh interval.
pub fn observe_flag(state: &AppState) {
    let observer = std::sync::Arc::new(tokio::sync::Mutex::new(super::flag_history::FlagObserver::default()));
    every(state, "flag-observer", state.settings.refresh_interval(), move |state| {
        let observer = observer.clone();
        async move { observer.lock().await.round(&state).await }
    });
}

/// One loop per notification receiver: events from the audit trail, or (Alertmanager) alerts
/// held while their condition does.
pub fn start_receivers(state: &AppState) {
    for r in &state.notify.ready {
        let task = format!("receiver-{}", r.name());
        let r = r.clone();
        if super::notify::kinds::of(&r).holds_conditions() {
            supervise(state, task, move |state| super::notify::alerting::hold_forever(state, r.clone()))
        } else {
            supervise(state, task, move |state| super::notify::outbox::deliver_forever(state, r.clone()))
        }
    }
}

/// One round of the journal's replay: its entries into the audit trail (at start, then every
/// refresh interval).
async fn replay_journal(state: &AppState) -> Result<(), String> {
    if state.journal.is_empty() {
        return Ok(());
    }
    let flag_now = state.flags.read().await.ok().and_then(|r| r.raw);
    let r = state
        .journal
        .replay(&state.state_db, flag_now)
        .await
        .map_err(|e| format!("the state database is not taking the journal's entries yet: {e}"))?;
    if r.recorded + r.already_there > 0 {
        tracing::info!(
            recorded = r.recorded,
            interrupted = r.interrupted,
            already_there = r.already_there,
            "audit journal replayed"
        )
    }
    Ok(())
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
