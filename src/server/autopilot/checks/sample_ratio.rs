//! The built-in check `sample_ratio`.

use chrono::{DateTime, Utc};

use crate::api::autopilot::Verdict;

use super::super::super::error::Source;
use super::super::super::service::ask;
use super::super::super::state::AppState;
use super::super::stats::srm_look;
use super::super::store::Plan;
use super::{Check, Found, Look, Round};

/// Do users split as the flag says? The unit is the **user** (the flag buckets users, not
/// writes): distinct users writing since the step began (after a grace period), split or legacy
/// only, from the diary. An anytime-valid sequential test (`stats::srm_look`) keeps the false
/// alarm rate per step at `sample_ratio_alpha` although it looks every round; a gap under
/// `sample_ratio_floor_points` never fails. At 0 % or 100 % every user is on one path: the
/// legacy share decides. Catches writers that never read the new value.
pub struct SampleRatio;

impl Check for SampleRatio {
    fn name(&self) -> &'static str {
        "sample_ratio"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(sample_ratio(r.state, r.plan, r.percentage, r.now))
    }
}

async fn sample_ratio(state: &AppState, plan: &Plan, percentage: Option<u8>, now: DateTime<Utc>) -> Found {
    let a = &state.settings.autopilot;
    let threshold = threshold(a);
    let Some(started) = plan.step_started_at else { return Found::not_yet(threshold) };
    let Some(p) = percentage else {
        return Found::inconclusive(threshold, "", "the flag's percentage cannot be read");
    };
    if p == 0 || p == 100 {
        return Found {
            detail: format!("at {p} % every user is on one path: the legacy share decides"),
            ..Found::not_yet(threshold)
        };
    }
    let from = started + chrono::Duration::seconds(a.sample_ratio_grace_secs as i64);
    if (now - from).num_seconds() < 30 {
        return Found::inconclusive(threshold, "", "the step is in its grace period (writers read the new value)");
    }
    let table = &state.settings.schema.table;
    let query = users_query(table, from, now);
    let users = ask(state, Source::DiaryDatabase, async {
        let diary = state.diary.as_ref().map_err(Clone::clone)?;
        diary.users_by_path(from, now).await
    })
    .await;
    let (split, legacy) = match users {
        Err(e) => return Found::inconclusive(threshold, query, e),
        Ok((s, l)) => (s.max(0) as u64, l.max(0) as u64),
    };
    let n = split + legacy;
    if n < a.min_users {
        return Found {
            sample: Some(n as i64),
            ..Found::inconclusive(threshold, query, format!("{n} users wrote, fewer than {}", a.min_users))
        };
    }
    let look = srm_look(
        split,
        legacy,
        f64::from(p) / 100.0,
        a.sample_ratio_alpha,
        a.sample_ratio_concentration,
        a.sample_ratio_floor_points,
    );
    let window = (now - from).num_seconds();
    let early = look.mismatch && window < a.sample_ratio_min_window_secs as i64;
    let share = 100.0 * split as f64 / n as f64;
    let measured = format!(
        "{share:.1} % of {n} users wrote split over the last {window} s of the step, the flag says {p} % (gap {:+.1} \
         points, Bayes factor {:.3})",
        look.gap_points,
        look.log_bayes_factor.exp()
    );
    Found {
        verdict: match (look.mismatch, early) {
            (true, false) => Verdict::Fail,
            (true, true) => Verdict::Inconclusive,
            (false, _) => Verdict::Pass,
        },
        value: Some(look.log_bayes_factor.exp().min(1e12)),
        threshold,
        sample: Some(n as i64),
        query,
        detail: match (look.mismatch, early) {
            (true, false) => format!("{measured}: writers do not follow the flag"),
            (true, true) => format!(
                "{measured}: judged once the window holds {} s (early in a step the users seen are those who write \
                 most often)",
                a.sample_ratio_min_window_secs
            ),
            (false, _) => measured,
        },
    }
}

/// The test and its bounds, as the evaluation shows them.
fn threshold(a: &crate::server::config::AutopilotSettings) -> String {
    format!(
        "Bayes factor < {:.0} (α = {} per step, anytime-valid) or a gap under {} points, with ≥ {} users",
        1.0 / a.sample_ratio_alpha,
        a.sample_ratio_alpha,
        a.sample_ratio_floor_points,
        a.min_users
    )
}

/// The SQL `users_by_path` runs, as the evaluation shows it.
fn users_query(table: &str, from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE split), count(*) FILTER (WHERE NOT split) FROM (SELECT user_id, \
         bool_or({}) AS split FROM {table} WHERE created_at >= '{}' AND created_at < '{}' GROUP BY user_id) users",
        super::super::super::categories::SPLIT_WRITE,
        from.to_rfc3339(),
        now.to_rfc3339()
    )
}
