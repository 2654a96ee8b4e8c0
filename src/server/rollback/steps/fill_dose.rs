//! Fill an empty `dose` from `insulin_short` before the downgrade (opt-in, typed FILL; issue 33,
//! item 2; the rules are in `fill.rs`). It runs after the archive, which keeps every value from
//! before it, so the roll-forward can undo it; the diary's transaction commits only when the
//! diary then equals the archive with the same rules applied.

use super::super::archive;
use super::super::fill::{self, named_counts, FillRule};
use super::{Choices, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct FillDose;

/// Ids of flagged rows shown in the output.
const SHOWN_IDS: i64 = 20;

impl RollbackStep for FillDose {
    fn name(&self) -> &'static str {
        "fill_dose"
    }

    fn title(&self) -> &'static str {
        "Fill dose from insulin_short"
    }

    fn chosen(&self, choices: Choices) -> bool {
        choices.fill_dose
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let table = &cx.state.settings.schema.table;
        let counts = cx.fill_counts.map(named_counts);
        let count = |r: FillRule| {
            counts.as_ref().and_then(|c| c.iter().find(|(x, _)| *x == r)).map(|(_, n)| n.to_string()).unwrap_or("?".into())
        };
        if !cx.choices.fill_dose {
            let empty = counts.as_ref().map(|c| {
                c.iter().filter(|(r, _)| r.fills() || *r == FillRule::SkipLongOnly || *r == FillRule::SkipPartsEqual).map(|(_, n)| n).sum::<i64>()
            });
            return vec![format!(
                "not chosen: {} split row(s) keep an empty dose (legacy clients will show no insulin on them after the downgrade)",
                empty.map(|n| n.to_string()).unwrap_or("?".into())
            )];
        }
        let mut lines = vec![format!("UPDATE {table} SET dose = insulin_short WHERE {} (one transaction)", fill::fills_sql())];
        lines.extend(FillRule::ALL.iter().filter(|r| **r != FillRule::NotSplit).map(|r| format!("{}: {} row(s): {}", r.name(), count(*r), r.describe())));
        lines.push("verify: the diary equals the archive with the same rules applied (count, checksum, units), else nothing is written".into());
        lines.push("undo: the roll-forward gives the filled rows their archived (empty) dose back".into());
        lines
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let run = cx.run.id;
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let table = diary.table();
            let header = archive::header(&state.state_db, run).await.map_err(|e| e.to_string())?;
            let Some(header) = header else {
                return Err(format!("run #{run} has no verified archive: the fill is refused (the archive keeps the dose it replaces)"));
            };
            if header.filled_at.is_some() {
                let t = archive::verify(diary.pool(), &state.state_db, run, table).await.map_err(|e| e.to_string())?;
                cx.log.line(format!("already filled, and the diary verifies against the archive with the fill: {t}"));
                return Ok(());
            }
            let mut conn = super::diary_writer(state).await?;
            // Counted from the archive (the values before the fill): right on a retry too.
            let counts = archive::fill_counts(&state.state_db, run).await.map_err(|e| e.to_string())?;
            let flagged = archive::ids_under(&state.state_db, run, FillRule::FillBothDiffer, SHOWN_IDS)
                .await
                .map_err(|e| e.to_string())?;
            let (written, got) = archive::apply_fill(&mut conn, &state.state_db, run, table).await?;
            archive::mark_filled(&state.state_db, run, fill::counts_json(&counts)).await.map_err(|e| e.to_string())?;
            let named = named_counts(&counts);
            cx.log.line(format!("filled {written} row(s); verified: the diary and the archive with the fill both hold {got}"));
            for (rule, n) in named.iter().filter(|(r, _)| *r != FillRule::NotSplit) {
                cx.log.line(format!("{}: {n} row(s): {}", rule.name(), rule.describe()));
            }
            if !flagged.is_empty() {
                let ids: Vec<String> = flagged.iter().map(i64::to_string).collect();
                cx.log.line(format!(
                    "flagged (both parts, different; dose shows the short part only): ids {}{}",
                    ids.join(", "),
                    if flagged.len() as i64 == SHOWN_IDS { ", …" } else { "" }
                ));
            }
            Ok(())
        })
    }
}
