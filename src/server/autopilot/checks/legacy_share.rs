//! The built-in check `legacy_share`.

use chrono::{DateTime, Utc};

use crate::api::autopilot::Verdict;

use super::super::super::error::{Source, SourceError};
use super::super::super::service::ask;
use super::super::super::state::AppState;
use super::super::super::versions;
use super::super::plan::legacy_ceiling;
use super::super::store::Plan;
use super::{Check, Found, Look, Round};

/// The legacy share against the step's ceiling, measured only over writes made after the step's
/// write was read back plus `legacy_grace_secs` (never over the previous step's writes), over
/// the last 5 minutes at most, with at least `legacy_min_writes`. At 100 %, once the flag has
/// held it for `watch_secs`, the guide's target over that whole window ("stays below").
pub struct LegacyShare;

impl Check for LegacyShare {
    fn name(&self) -> &'static str {
        "legacy_share"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(legacy_share(r.state, r.plan, r.now))
    }
}

async fn legacy_share(state: &AppState, plan: &Plan, now: DateTime<Utc>) -> Found {
    let a = &state.settings.autopilot;
    let (Some(step), Some(started)) = (plan.current(), plan.step_started_at) else {
        return Found::not_yet("the step's ceiling");
    };
    let held = (now - started).num_seconds();
    let watching = step.percentage == 100 && held >= a.watch_secs as i64;
    let ceiling = if watching {
        legacy_ceiling(step, a.legacy_margin).min(state.settings.adoption.legacy_share_target)
    } else {
        legacy_ceiling(step, a.legacy_margin)
    };
    let threshold = format!("≤ {ceiling:.3} with ≥ {} writes", a.legacy_min_writes);
    let measured = held - a.legacy_grace_secs as i64;
    if measured < 30 {
        return Found::inconclusive(
            threshold,
            "",
            format!("the step is in its propagation grace ({} s): writers read the new value", a.legacy_grace_secs),
        );
    }
    let window = if watching { a.watch_secs as i64 } else { measured.min(300) };
    match writes(state, window, now).await {
        Err(e) => Found::inconclusive(threshold, "", e),
        Ok(((split, legacy), query)) => {
            let total = split + legacy;
            if total < a.legacy_min_writes as f64 {
                return Found {
                    sample: Some(total.round() as i64),
                    ..Found::inconclusive(
                        threshold,
                        query,
                        format!("{total:.0} writes in the last {window} s, fewer than {}", a.legacy_min_writes),
                    )
                };
            }
            let share = legacy / total;
            let passed = share <= ceiling;
            // A failure names the app versions the legacy writes come from (the guide: "check
            // that clients are updated").
            let from = if passed { None } else { blame(state, window, now).await };
            Found {
                verdict: if passed { Verdict::Pass } else { Verdict::Fail },
                value: Some(share),
                threshold,
                sample: Some(total.round() as i64),
                query,
                detail: format!(
                    "the legacy share over the last {window} s is {:.1} %{}{}",
                    share * 100.0,
                    if watching { " (the guide's target, held at 100 %)" } else { "" },
                    from.map(|b| format!("; {b}")).unwrap_or_default()
                ),
            }
        }
    }
}

/// Which versions the window's legacy writes come from ("82 % of legacy writes come from 3.1.4"),
/// or why that is unknown.
async fn blame(state: &AppState, window_secs: i64, at: DateTime<Utc>) -> Option<String> {
    let prom = state.prometheus.as_ref().ok()?;
    let s = &state.settings.client_versions;
    match ask(state, Source::Prometheus, versions::writes_at(prom, s, window_secs, at)).await {
        Ok((writes, _)) => versions::blame(&writes),
        Err(e) => Some(format!("the writes by {} are unknown: {e}", s.label)),
    }
}

/// Writes counted over the window ending at `at` from Prometheus: rate × seconds.
async fn writes(state: &AppState, window_secs: i64, at: DateTime<Utc>) -> Result<((f64, f64), String), SourceError> {
    let m = &state.settings.metrics;
    let w = format!("{window_secs}s");
    let (split_q, legacy_q) = (m.split_rate(&w), m.legacy_rate(&w));
    let shown = format!("({split_q}) * {window_secs}  and  ({legacy_q}) * {window_secs}  at {}", at.to_rfc3339());
    let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
    let (split, legacy) = ask(state, Source::Prometheus, async {
        let (s, l) = tokio::join!(prom.scalar_at(&split_q, at), prom.scalar_at(&legacy_q, at));
        Ok((s?, l?))
    })
    .await?;
    Ok(((split * window_secs as f64, legacy * window_secs as f64), shown))
}
