//! The adoption service: usage rates over a range, the legacy share, and the guide's 24-hour
//! check. Both the REST API and the pages call `adoption`.

use chrono::{DateTime, Utc};

use crate::api::adoption::{legacy_share, share, Adoption, CheckOutcome, DayCheck, Points};
use crate::api::window::Window;

use super::error::{Source, SourceError};
use super::prometheus::{Prometheus, RangeSeries};
use super::state::AppState;

/// About this many points per chart line.
const POINTS_PER_CHART: f64 = 600.0;
const DAY_SECS: i64 = 24 * 3600;

/// The chart step for a range: ~600 points, never under 15 s, never over Prometheus's limit.
pub fn step_for(range: Window) -> f64 {
    (range.as_secs() as f64 / POINTS_PER_CHART).max(15.0).ceil()
}

/// The `rate()` window for a step: wide enough that no sample falls between two points.
pub fn rate_window(step: f64) -> String {
    format!("{}s", (2.0 * step).max(300.0).ceil() as i64)
}

fn only_series(series: Vec<RangeSeries>) -> Points {
    series.into_iter().next().map(|s| s.points).unwrap_or_default()
}

pub async fn adoption(state: &AppState, range: Window) -> Result<Adoption, SourceError> {
    let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
    let m = &state.settings.metrics;
    let end = Utc::now();
    let start = end - chrono::Duration::seconds(range.as_secs());
    let step = step_for(range);
    let window = rate_window(step);
    let (t0, t1) = (start.timestamp() as f64, end.timestamp() as f64);
    let queries = [m.split_rate(&window), m.legacy_rate(&window), m.split_rate("5m"), m.legacy_rate("5m")];
    let (split, legacy, now_split, now_legacy) = tokio::join!(
        prom.range(&queries[0], t0, t1, step),
        prom.range(&queries[1], t0, t1, step),
        scalar_or_zero(prom, &queries[2]),
        scalar_or_zero(prom, &queries[3]),
    );
    let (split, legacy) = (only_series(split?), only_series(legacy?));
    let current_share = share(now_legacy?, now_split?);
    let check = day_check(state, prom, end).await?;
    Ok(Adoption {
        range_start: start,
        range_end: end,
        step_secs: step,
        legacy_share: legacy_share(&split, &legacy),
        split_per_s: split,
        legacy_per_s: legacy,
        current_share,
        target: state.settings.adoption.legacy_share_target,
        check,
    })
}

/// A rate with no series at all means nothing was written: zero for the share's purposes.
async fn scalar_or_zero(prom: &Prometheus, query: &str) -> Result<f64, SourceError> {
    match prom.scalar(query).await {
        Err(SourceError::Missing { .. }) => Ok(0.0),
        other => other,
    }
}

/// When the current rollout started: the configured time, else the first observed flag value
/// above 0 % after the last observed 0 % (or unreadable) value.
pub async fn rollout_started_at(state: &AppState) -> Result<Option<DateTime<Utc>>, SourceError> {
    if let Some(t) = state.settings.adoption.rollout_started_at {
        return Ok(Some(t));
    }
    sqlx::query_scalar(
        "SELECT min(observed_at) FROM flag_observations
          WHERE flag_key = $1 AND percentage > 0
            AND id > coalesce((SELECT max(id) FROM flag_observations
                                WHERE flag_key = $1 AND (percentage = 0 OR percentage IS NULL)), 0)",
    )
    .bind(&state.settings.flag.key)
    .fetch_one(&state.state_db)
    .await
    .map_err(|e| super::error::from_sqlx(Source::StateDatabase, &e))
}

async fn day_check(state: &AppState, prom: &Prometheus, now: DateTime<Utc>) -> Result<DayCheck, SourceError> {
    let target = state.settings.adoption.legacy_share_target;
    let Some(started) = rollout_started_at(state).await? else {
        return Ok(DayCheck {
            outcome: CheckOutcome::Unknown,
            rollout_started_at: None,
            elapsed_secs: None,
            share_24h: None,
            message: "The dashboard has not seen the rollout start (no flag value above 0 % observed); \
                      set adoption.rollout_started_at if it started before the dashboard ran."
                .into(),
        });
    };
    let elapsed = (now - started).num_seconds();
    if elapsed < DAY_SECS {
        return Ok(DayCheck {
            outcome: CheckOutcome::TooEarly,
            rollout_started_at: Some(started),
            elapsed_secs: Some(elapsed),
            share_24h: None,
            message: format!(
                "{:.1} h since the rollout started; the legacy-share check applies after 24 h.",
                elapsed as f64 / 3600.0
            ),
        });
    }
    let m = &state.settings.metrics;
    let (split_q, legacy_q) = (m.split_rate("24h"), m.legacy_rate("24h"));
    let (split, legacy) = tokio::join!(scalar_or_zero(prom, &split_q), scalar_or_zero(prom, &legacy_q));
    let share_24h = share(legacy?, split?);
    // The same definition as the autopilot's legacy-share check: at a partial rollout the share
    // the percentage implies (plus the margin); at 100 % (or an unreadable flag) the guide's target.
    let percentage = state.flags.read().await.ok().and_then(|r| r.parsed).and_then(Result::ok).map(|p| p.get());
    let (limit, what) = match percentage {
        Some(p) if p < 100 => {
            let step = crate::api::autopilot::PlanStep { percentage: p, bake_secs: 0, legacy_ceiling: None };
            let ceiling = super::autopilot::plan::legacy_ceiling(&step, state.settings.autopilot.legacy_margin);
            (ceiling, format!("the {:.2} % a {p} % rollout allows", ceiling * 100.0))
        }
        _ => (target, format!("the {:.2} % target", target * 100.0)),
    };
    let (outcome, message) = match share_24h {
        None => (CheckOutcome::Unknown, "No dose was written in the last 24 hours.".to_string()),
        Some(s) if s < limit || (s <= limit && limit >= 1.0) => {
            (CheckOutcome::Pass, format!("Legacy share over the last 24 h is {:.2} %, below {what}.", s * 100.0))
        }
        Some(s) => (
            CheckOutcome::Fail,
            format!(
                "Legacy share over the last 24 h is {:.2} %, not below {what}: check that clients are updated.",
                s * 100.0
            ),
        ),
    };
    Ok(DayCheck { outcome, rollout_started_at: Some(started), elapsed_secs: Some(elapsed), share_24h, message })
}
