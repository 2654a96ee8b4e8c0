//! The autopilot's checks. Each answers pass, fail or inconclusive with what it measured, the
//! threshold, the sample and the query or SQL exactly as run. Missing data, an outside system
//! that does not answer, or too small a sample is inconclusive: never a pass.

use chrono::{DateTime, Utc};

use crate::api::autopilot::{Evaluation, Verdict};

use super::super::categories::DOUBLED;
use super::super::error::{Source, SourceError};
use super::super::service::{self, ask};
use super::super::state::AppState;
use super::decide::action_of;
use super::plan::legacy_ceiling;
use super::stats::srm_look;
use super::store::Plan;

/// Every built-in check, by the name settings and the API use.
pub const NAMES: [&str; 5] = ["doubled_doses", "sample_ratio", "legacy_share", "alerts", "schema"];

/// The built-in checks' names and the settings' custom ones.
pub fn all_names(settings: &crate::server::config::AutopilotSettings) -> Vec<String> {
    NAMES.iter().map(|n| n.to_string()).chain(settings.custom.iter().map(|c| c.name.clone())).collect()
}

/// What a check found, before the driver stamps it with the round's time, step and action.
struct Found {
    verdict: Verdict,
    value: Option<f64>,
    threshold: String,
    sample: Option<i64>,
    query: String,
    detail: String,
}

impl Found {
    /// A check that has nothing to compare yet (before the first step's flag write).
    fn not_yet(threshold: impl Into<String>) -> Found {
        Found {
            verdict: Verdict::Pass,
            value: None,
            threshold: threshold.into(),
            sample: None,
            query: String::new(),
            detail: "nothing to compare before the first step".into(),
        }
    }

    fn inconclusive(threshold: impl Into<String>, query: impl Into<String>, why: impl std::fmt::Display) -> Found {
        Found {
            verdict: Verdict::Inconclusive,
            value: None,
            threshold: threshold.into(),
            sample: None,
            query: query.into(),
            detail: why.to_string(),
        }
    }
}

/// Evaluates every check for `plan` at `now`. `percentage`: what the flag holds now.
pub async fn evaluate(state: &AppState, plan: &Plan, percentage: Option<u8>, now: DateTime<Utc>) -> Vec<Evaluation> {
    let (doubled, ratio, legacy, alerts, schema) = tokio::join!(
        doubled_doses(state, plan),
        sample_ratio(state, plan, percentage, now),
        legacy_share(state, plan, now),
        firing_alerts(state),
        schema(state),
    );
    let found = [doubled, ratio, legacy, alerts, schema];
    let settings = &state.settings.autopilot;
    let mut customs = Vec::with_capacity(settings.custom.len());
    for c in &settings.custom {
        customs.push((c.name.as_str(), custom_check(state, plan, c).await, Some(c.action)));
    }
    let builtin = NAMES.iter().zip(found).map(|(name, f)| (*name, f, None));
    builtin
        .chain(customs)
        .map(|(name, f, action)| Evaluation {
            check: name.to_string(),
            at: now,
            step: plan.current_step,
            verdict: f.verdict,
            value: f.value,
            threshold: f.threshold,
            sample: f.sample,
            query: f.query,
            detail: f.detail,
            action: action_of(name, action.unwrap_or_else(|| settings.action(name)), &plan.dismissed),
            acted: false,
        })
        .collect()
}

/// A custom PromQL check: this round's measurement, judged with the step's earlier ones.
async fn custom_check(state: &AppState, plan: &Plan, c: &super::custom::CustomCheck) -> Found {
    use super::custom::{verdict, Condition, Measured};
    let measured = match state.prometheus.as_ref() {
        Err(e) => Measured::Error(e.to_string()),
        Ok(prom) => match ask(state, Source::Prometheus, prom.scalar(&c.query)).await {
            Ok(v) => Measured::Value(v),
            Err(SourceError::Missing { .. }) => Measured::NoData,
            Err(e) => Measured::Error(e.to_string()),
        },
    };
    let earlier =
        super::store::check_history(&state.state_db, plan.id, plan.current_step, &c.name).await.unwrap_or_default();
    let cond = Condition::parse(&c.condition).ok();
    let failed_before =
        earlier.iter().filter(|(v, _)| matches!((v, cond), (Some(v), Some(k)) if !k.holds(*v))).count() as u32;
    let errors_before =
        earlier.iter().take_while(|(v, detail)| v.is_none() && detail.contains("query error")).count() as u32;
    let value = match &measured {
        Measured::Value(v) => Some(*v),
        _ => None,
    };
    let (verdict, detail) = verdict(c, measured, failed_before, errors_before);
    Found { verdict, value, threshold: c.condition.clone(), sample: None, query: c.query.clone(), detail }
}

/// Any record in the whole table that copies `dose` into both parts and did not when the plan
/// started fails at once, however it got there: inserted, committed late, written with an old
/// `created_at`, or made by an UPDATE of an existing row. Read through a partial index on the
/// doubled predicate (README), so a round costs the doubled rows, not the table.
async fn doubled_doses(state: &AppState, plan: &Plan) -> Found {
    let threshold = "= 0 new records";
    let table = &state.settings.schema.table;
    let known = plan.doubled_at_start.len();
    let query = format!(
        "SELECT count(*) FROM {table} WHERE {DOUBLED} AND NOT (id = ANY(<the {known} ids doubled when the plan started>))"
    );
    let answer = ask(state, Source::DiaryDatabase, async {
        let (diary, schema) = service::diary_and_schema(state).await?;
        if !schema.has_split_columns() {
            return Ok(None);
        }
        diary.doubled_beyond(&plan.doubled_at_start).await.map(Some)
    })
    .await;
    match answer {
        Ok(Some((n, newest))) => Found {
            verdict: if n == 0 { Verdict::Pass } else { Verdict::Fail },
            value: Some(n as f64),
            threshold: threshold.into(),
            sample: Some(n),
            query,
            detail: if n == 0 {
                "no record copies dose into both parts beyond those known when the plan started".into()
            } else {
                let ids: Vec<String> = newest.iter().map(|i| format!("#{i}")).collect();
                format!(
                    "{n} record(s) copy dose into both insulin_short and insulin_long since the plan started (newest {})",
                    ids.join(", ")
                )
            },
        },
        Ok(None) => Found::inconclusive(threshold, query, "the split columns do not exist"),
        Err(e) => Found::inconclusive(threshold, query, e),
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

/// Do users split as the flag says? The unit is the **user** (the flag buckets users, not
/// writes): distinct users writing since the step began (after a grace period), split or legacy
/// only, from the diary. An anytime-valid sequential test (`stats::srm_look`) keeps the false
/// alarm rate per step at `sample_ratio_alpha` although it looks every round; a gap under
/// `sample_ratio_floor_points` never fails. At 0 % or 100 % every user is on one path: the
/// legacy share decides. Catches writers that never read the new value.
async fn sample_ratio(state: &AppState, plan: &Plan, percentage: Option<u8>, now: DateTime<Utc>) -> Found {
    let a = &state.settings.autopilot;
    let threshold = format!(
        "Bayes factor < {:.0} (α = {} per step, anytime-valid) or a gap under {} points, with ≥ {} users",
        1.0 / a.sample_ratio_alpha,
        a.sample_ratio_alpha,
        a.sample_ratio_floor_points,
        a.min_users
    );
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
    let query = format!(
        "SELECT count(*) FILTER (WHERE split), count(*) FILTER (WHERE NOT split) FROM (SELECT user_id, \
         bool_or({}) AS split FROM {table} WHERE created_at >= '{}' AND created_at < '{}' GROUP BY user_id) users",
        super::super::categories::SPLIT_WRITE,
        from.to_rfc3339(),
        now.to_rfc3339()
    );
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

/// The legacy share against the step's ceiling, measured only over writes made after the step's
/// write was read back plus `legacy_grace_secs` (never over the previous step's writes), over
/// the last 5 minutes at most, with at least `legacy_min_writes`. At 100 %, once the flag has
/// held it for `watch_secs`, the guide's target over that whole window ("stays below").
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
            Found {
                verdict: if share <= ceiling { Verdict::Pass } else { Verdict::Fail },
                value: Some(share),
                threshold,
                sample: Some(total.round() as i64),
                query,
                detail: format!(
                    "the legacy share over the last {window} s is {:.1} %{}",
                    share * 100.0,
                    if watching { " (the guide's target, held at 100 %)" } else { "" }
                ),
            }
        }
    }
}

/// A firing rollout alert (the `alerts.match_labels` ones) fails.
async fn firing_alerts(state: &AppState) -> Found {
    let query = "ALERTS{alertstate=\"firing\"} matching alerts.match_labels";
    match service::alerts(state).await {
        Err(e) => Found::inconclusive("no firing rollout alert", query, e),
        Ok(alerts) => {
            let firing: Vec<&str> = alerts.iter().filter(|a| a.state == "firing").map(|a| a.name.as_str()).collect();
            Found {
                verdict: if firing.is_empty() { Verdict::Pass } else { Verdict::Fail },
                value: Some(firing.len() as f64),
                threshold: "no firing rollout alert".into(),
                sample: None,
                query: query.into(),
                detail: if firing.is_empty() {
                    "no rollout alert is firing".into()
                } else {
                    format!("firing: {}", firing.join(", "))
                },
            }
        }
    }
}

/// The split columns exist, and the revision is the expected head (when the settings name one).
async fn schema(state: &AppState) -> Found {
    let expected = state.settings.schema.expected_head.clone();
    let threshold = match &expected {
        Some(h) => format!("insulin_short and insulin_long exist; revision {h}"),
        None => "insulin_short and insulin_long exist".into(),
    };
    let query = "information_schema.columns of history_records; SELECT version_num FROM alembic_version";
    match service::diary_and_schema(state).await {
        Err(e) => Found::inconclusive(threshold, query, e),
        Ok((_, s)) => {
            let columns = s.has_split_columns();
            let revision_ok = expected.as_ref().is_none_or(|h| s.alembic_revision.as_ref() == Some(h));
            let passed = columns && revision_ok;
            Found {
                verdict: if passed { Verdict::Pass } else { Verdict::Fail },
                value: None,
                threshold,
                sample: None,
                query: query.into(),
                detail: match (columns, revision_ok) {
                    (false, _) => "a split column is missing".into(),
                    (true, false) => {
                        format!("the revision is {}", s.alembic_revision.unwrap_or_else(|| "unknown".into()))
                    }
                    (true, true) => "the split columns exist at the expected revision".into(),
                },
            }
        }
    }
}
