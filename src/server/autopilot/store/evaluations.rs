//! Every SQL statement on `autopilot_evaluations`: each check's verdict at each round, as
//! written, read back for the page, and summed up for the budgets and custom checks.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::autopilot::{CheckAction, Evaluation, Verdict};

use super::super::super::error::SourceError;
use super::db_err;

pub async fn record_evaluations(db: &PgPool, plan_id: i64, evaluations: &[Evaluation]) -> Result<(), SourceError> {
    let mut tx = db.begin().await?;
    for e in evaluations {
        sqlx::query(
            "INSERT INTO autopilot_evaluations
               (plan_id, at, step, check_name, verdict, value, threshold, sample, query, detail, action, acted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(plan_id)
        .bind(e.at)
        .bind(e.step)
        .bind(&e.check)
        .bind(e.verdict.as_str())
        .bind(e.value)
        .bind(&e.threshold)
        .bind(e.sample)
        .bind(&e.query)
        .bind(&e.detail)
        .bind(e.action.as_str())
        .bind(e.acted)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await.map_err(db_err)
}

type EvaluationRow =
    (String, DateTime<Utc>, i32, String, Option<f64>, String, Option<i64>, String, String, String, bool);

fn evaluation(r: EvaluationRow) -> Evaluation {
    Evaluation {
        check: r.0,
        at: r.1,
        step: r.2,
        verdict: Verdict::parse(&r.3).unwrap_or(Verdict::Inconclusive),
        value: r.4,
        threshold: r.5,
        sample: r.6,
        query: r.7,
        detail: r.8,
        action: CheckAction::parse(&r.9).unwrap_or(CheckAction::Pause),
        acted: r.10,
    }
}

/// The plan's newest `limit` evaluations, newest first.
pub async fn evaluations(db: &PgPool, plan_id: i64, limit: i64) -> Result<Vec<Evaluation>, SourceError> {
    let rows: Vec<EvaluationRow> = sqlx::query_as(
        "SELECT check_name, at, step, verdict, value, threshold, sample, query, detail, action, acted
           FROM autopilot_evaluations WHERE plan_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(plan_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(evaluation).collect())
}

/// Each check's newest verdict, by check name, from a newest-first history (every round
/// evaluates every check, so recent history holds each one).
pub fn latest_of(history: &[Evaluation]) -> Vec<Evaluation> {
    let mut latest: Vec<Evaluation> = Vec::new();
    for e in history {
        if !latest.iter().any(|l| l.check == e.check) {
            latest.push(e.clone());
        }
    }
    latest.sort_by(|a, b| a.check.cmp(&b.check));
    latest
}

/// A check's earlier measurements in a step, newest first: (value, detail).
pub async fn check_history(
    db: &PgPool,
    plan_id: i64,
    step: i32,
    check: &str,
) -> Result<Vec<(Option<f64>, String)>, SourceError> {
    sqlx::query_as(
        "SELECT value, detail FROM autopilot_evaluations WHERE plan_id = $1 AND step = $2 AND check_name = $3
          ORDER BY at DESC, id DESC",
    )
    .bind(plan_id)
    .bind(step)
    .bind(check)
    .fetch_all(db)
    .await
    .map_err(db_err)
}

/// Each check's unbroken run of inconclusive verdicts in step `step`, up to the last round:
/// (check, since, rounds).
pub async fn inconclusive_streaks(
    db: &PgPool,
    plan_id: i64,
    step: i32,
) -> Result<Vec<(String, DateTime<Utc>, i64)>, SourceError> {
    sqlx::query_as(
        "WITH last AS (
           SELECT check_name, max(at) FILTER (WHERE verdict <> 'inconclusive') AS conclusive
             FROM autopilot_evaluations WHERE plan_id = $1 AND step = $2 GROUP BY check_name)
         SELECT e.check_name, min(e.at), count(*)
           FROM autopilot_evaluations e JOIN last l USING (check_name)
          WHERE e.plan_id = $1 AND e.step = $2 AND e.verdict = 'inconclusive'
            AND (l.conclusive IS NULL OR e.at > l.conclusive)
          GROUP BY e.check_name",
    )
    .bind(plan_id)
    .bind(step)
    .fetch_all(db)
    .await
    .map_err(db_err)
}
