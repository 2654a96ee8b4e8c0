//! Re-insert the rows `pg_restore --clean` dropped (issue 33, item 3; chosen with the restore):
//! every row of step 3's whole-table archive the restored table lacks goes back with its id
//! (its dose filled by the fill's rule when the fill was applied), the id sequence moves above
//! them, and the diary's transaction commits only when they tally equal to the archive.

use super::super::archive::{self, whole};
use super::{Choices, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct ReinsertDroppedRows;

impl RollbackStep for ReinsertDroppedRows {
    fn name(&self) -> &'static str {
        "reinsert_dropped_rows"
    }

    fn title(&self) -> &'static str {
        "Re-insert the rows the restore dropped"
    }

    fn chosen(&self, choices: Choices) -> bool {
        choices.restore_data
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        if !cx.choices.restore_data {
            return vec!["not chosen: there is no restore".into()];
        }
        let table = &cx.state.settings.schema.table;
        vec![
            format!("copy step 3's whole-table archive into a temporary table of the diary; its tally must equal the archive's"),
            format!("INSERT INTO {table} OVERRIDING SYSTEM VALUE … every archived row whose id the restored table lacks (ids kept; the split columns the backup's schema lacks are not written; the fill's rule on dose if the fill was applied)"),
            format!("setval the id sequence of {table} above every id, so new entries do not collide"),
            "verify: the re-inserted rows tally equal to the archive (id, user, time, dose), else nothing is written; count the rows the backup brought back itself and the ones it resurrected".into(),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let run = cx.run.id;
            let header = archive::header(&state.state_db, run).await.map_err(|e| e.to_string())?;
            let whole_rows = whole::rows(&state.state_db, run).await.map_err(|e| e.to_string())?;
            let (Some(header), Some(_)) = (header, whole_rows) else {
                return Err(format!("run #{run} has no verified archive of the whole table: nothing to re-insert from"));
            };
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let conn = super::diary_writer(state).await?;
            let done = whole::reinsert(conn, &state.state_db, run, diary.table(), header.filled_at.is_some())
                .await
                .map_err(|e| e.to_string())?;
            let counts = serde_json::json!({
                "reinserted": done.reinserted, "present": done.present, "resurrected": done.resurrected
            });
            whole::mark_reinserted(&state.state_db, run, counts).await.map_err(|e| e.to_string())?;
            // Old hours changed: the charts count them again (this replica; others at their next
            // reconcile of the last 48 hours, or their next start).
            diary.forget_counts();
            cx.log.line(format!(
                "pg_restore dropped {} archived row(s): re-inserted, ids kept{}",
                done.reinserted,
                if header.filled_at.is_some() { ", dose filled by the fill's rule" } else { "" }
            ));
            cx.log.line(format!("{} archived row(s) came back from the backup itself", done.present));
            cx.log.line(format!(
                "{} row(s) of the backup were not in the table when it was archived (deleted since the backup): kept",
                done.resurrected
            ));
            if let Some(seq) = done.sequence {
                cx.log.line(format!("id sequence at {seq}"));
            }
            cx.log.line(format!("verified: the re-inserted rows and the archive both hold {}", done.verified));
            Ok(())
        })
    }
}
