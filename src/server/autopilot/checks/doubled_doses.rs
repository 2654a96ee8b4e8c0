//! The built-in check `doubled_doses`.

use crate::api::autopilot::Verdict;

use super::super::super::categories::DOUBLED;
use super::super::super::error::Source;
use super::super::super::service::{self, ask};
use super::super::super::state::AppState;
use super::super::store::Plan;
use super::{Check, Found, Look, Round};

/// Any record in the whole table that copies `dose` into both parts and did not when the plan
/// started fails at once, however it got there: inserted, committed late, written with an old
/// `created_at`, or made by an UPDATE of an existing row. Read through a partial index on the
/// doubled predicate (README), so a round costs the doubled rows, not the table.
pub struct DoubledDoses;

impl Check for DoubledDoses {
    fn name(&self) -> &'static str {
        "doubled_doses"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(doubled_doses(r.state, r.plan))
    }
}

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
