//! The autopilot's checks. Each answers pass, fail or inconclusive with what it measured, the
//! threshold, the sample and the query or SQL exactly as run. Missing data, an outside system
//! that does not answer, or too small a sample is inconclusive: never a pass.

use chrono::{DateTime, Utc};

use crate::api::autopilot::{CheckAction, Evaluation, PlanStep, Verdict};

use super::super::categories::DOUBLED;
use super::super::error::{Source, SourceError};
use super::super::service::{self, ask};
use super::super::state::AppState;
use super::plan::legacy_ceiling;
use super::stats::sample_ratio_p_value;
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
        doubled_doses(state, plan.created_at),
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
            action: if plan.dismissed.iter().any(|d| d == name) {
                CheckAction::DryRun
            } else {
                action.unwrap_or_else(|| settings.action(name))
            },
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

/// Any record written since the plan started that copies `dose` into both parts fails at once.
/// Counted like the records panels: settled hours and minutes from the rollup, only the open
/// minutes from the table, so a round's cost does not grow with the table or the plan's length.
/// A record committed more than `SETTLE_SECS` after its `created_at` is found at the rollup's
/// next recount (records.rs).
async fn doubled_doses(state: &AppState, since: DateTime<Utc>) -> Found {
    let threshold = "= 0 records";
    let table = &state.settings.schema.table;
    let shown = |end: Option<DateTime<Utc>>| {
        let until = end.map(|e| format!(" AND created_at < '{}'", e.to_rfc3339())).unwrap_or_default();
        format!(
            "SELECT count(*) FROM {table} WHERE created_at >= '{}'{until} AND {DOUBLED} \
             -- from the counted hours and minutes; the open minutes read from the table",
            since.to_rfc3339()
        )
    };
    let answer = ask(state, Source::DiaryDatabase, async {
        let (diary, schema) = service::diary_and_schema(state).await?;
        if !schema.has_split_columns() {
            return Ok(None);
        }
        let summary = diary.summary_since(since, &schema).await?;
        Ok(Some((summary.counts.doubled.unwrap_or_default(), summary.window_end)))
    })
    .await;
    match answer {
        Ok(Some((n, end))) => Found {
            verdict: if n == 0 { Verdict::Pass } else { Verdict::Fail },
            value: Some(n as f64),
            threshold: threshold.into(),
            sample: Some(n),
            query: shown(Some(end)),
            detail: if n == 0 {
                "no record since the plan started copies dose into both parts".into()
            } else {
                format!("{n} record(s) since the plan started copy dose into both insulin_short and insulin_long")
            },
        },
        Ok(None) => Found::inconclusive(threshold, shown(None), "the split columns do not exist"),
        Err(e) => Found::inconclusive(threshold, shown(None), e),
    }
}

/// Writes counted over the window from Prometheus: rate × seconds.
async fn writes(state: &AppState, window_secs: i64) -> Result<((f64, f64), String), SourceError> {
    let m = &state.settings.metrics;
    let w = format!("{window_secs}s");
    let (split_q, legacy_q) = (m.split_rate(&w), m.legacy_rate(&w));
    let shown = format!("({split_q}) * {window_secs}  and  ({legacy_q}) * {window_secs}");
    let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
    let (split, legacy) = ask(state, Source::Prometheus, async {
        let (s, l) = tokio::join!(prom.scalar(&split_q), prom.scalar(&legacy_q));
        Ok((s?, l?))
    })
    .await?;
    Ok(((split * window_secs as f64, legacy * window_secs as f64), shown))
}

/// The split share of writes since the step began (after a grace period) against the flag's
/// percentage: a one-sample chi-square test. Catches writers that never read the new value.
async fn sample_ratio(state: &AppState, plan: &Plan, percentage: Option<u8>, now: DateTime<Utc>) -> Found {
    let a = &state.settings.autopilot;
    let threshold = format!("p-value ≥ {} with ≥ {} writes", a.sample_ratio_alpha, a.min_writes);
    let Some(started) = plan.step_started_at else { return Found::not_yet(threshold) };
    let Some(p) = percentage else {
        return Found::inconclusive(threshold, "", "the flag's percentage cannot be read");
    };
    let from = started + chrono::Duration::seconds(a.sample_ratio_grace_secs as i64);
    let window = (now - from).num_seconds().min(plan.current().map_or(i64::MAX, |s| s.bake_secs as i64));
    if window < 30 {
        return Found::inconclusive(threshold, "", "the step is in its grace period (writers read the new value)");
    }
    match writes(state, window).await {
        Err(e) => Found::inconclusive(threshold, "", e),
        Ok(((split, legacy), query)) => {
            let total = split + legacy;
            if total < a.min_writes as f64 {
                return Found {
                    sample: Some(total.round() as i64),
                    ..Found::inconclusive(threshold, query, format!("{total:.0} writes, fewer than {}", a.min_writes))
                };
            }
            let p_value = sample_ratio_p_value(split, total, f64::from(p) / 100.0);
            let passed = p_value >= a.sample_ratio_alpha;
            Found {
                verdict: if passed { Verdict::Pass } else { Verdict::Fail },
                value: Some(p_value),
                threshold,
                sample: Some(total.round() as i64),
                query,
                detail: format!(
                    "{:.1} % of {total:.0} writes were split over the last {window} s, the flag says {p} %{}",
                    100.0 * split / total,
                    if passed { "" } else { ": writers do not follow the flag" }
                ),
            }
        }
    }
}

/// The legacy share now against the step's ceiling; 24 hours after the flag reached 100 %, the
/// guide's target (`adoption.legacy_share_target`) as well.
async fn legacy_share(state: &AppState, plan: &Plan, now: DateTime<Utc>) -> Found {
    let (Some(step), Some(started)) = (plan.current(), plan.step_started_at) else {
        return Found::not_yet("the step's ceiling");
    };
    let ceiling = step_ceiling(state, step, now - started);
    let threshold = format!("≤ {ceiling:.3}");
    match writes(state, 300).await {
        Err(e) => Found::inconclusive(threshold, "", e),
        Ok(((split, legacy), query)) => {
            let total = split + legacy;
            if total < 1.0 {
                return Found::inconclusive(threshold, query, "no writes in the last 5 minutes");
            }
            let share = legacy / total;
            Found {
                verdict: if share <= ceiling { Verdict::Pass } else { Verdict::Fail },
                value: Some(share),
                threshold,
                sample: Some(total.round() as i64),
                query,
                detail: format!("the legacy share over the last 5 minutes is {:.1} %", share * 100.0),
            }
        }
    }
}

/// The step's ceiling: its own, or the guide's target once it has held 100 % for 24 hours.
fn step_ceiling(state: &AppState, step: &PlanStep, held: chrono::Duration) -> f64 {
    let ceiling = legacy_ceiling(step, state.settings.autopilot.legacy_margin);
    if step.percentage == 100 && held >= chrono::Duration::hours(24) {
        ceiling.min(state.settings.adoption.legacy_share_target)
    } else {
        ceiling
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
